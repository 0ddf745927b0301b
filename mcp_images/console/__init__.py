"""The command line for people and shell scripts: ``generate``, ``edit``, ``estimate``,
``tasks`` and ``doctor``.

Every call goes through the MCP tools themselves: the server is built in-process with
`server.build.create_server` and called through the SDK's in-memory client, so a command
gets exactly the validation, refusals, saving, costs, task records and progress an agent
gets. Only presentation lives here (`display`), and the flags are read off the one
parameter declaration (`catalog.parameters`), never listed a second time (`flags`).

Nothing here is imported when the server starts: `cli` registers the subcommands from
`commands`, which imports the rest (and ``rich``) only when one of them runs.
"""

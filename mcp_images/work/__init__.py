"""The tools' work, apart from the protocol: one async function per tool and what it joins."""

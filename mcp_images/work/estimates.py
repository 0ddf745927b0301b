"""estimate_cost's work: the call checked by the one validation path, then priced."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcp_images.catalog.edit_rules import InputFacts, check_edit_inputs
from mcp_images.catalog.models import ImageParams
from mcp_images.pricing.costs import CostBreakdown
from mcp_images.runtime import Runtime
from mcp_images.work.validation import CheckedCall


@dataclass
class Estimate:
    model: str
    params: ImageParams
    breakdown: CostBreakdown
    input_sizes: list[tuple[int, int]]
    warnings: list[str]


async def _input_facts(rt: Runtime, call: CheckedCall, client_roots: list[Any] | None) -> list[InputFacts]:
    """The inputs' facts: read from references (dimensions and type only), or ``WIDTHxHEIGHT``."""
    from mcp_images.catalog.checks import parse_size
    from mcp_images.inputs.references import load_image_ref

    facts: list[InputFacts] = []
    policy = rt.input_policy(client_roots)
    for i, ref in enumerate(call.image_refs, 1):
        dims = parse_size(ref)
        if dims is not None:
            facts.append(InputFacts(f"image {i}", (call.spec.edit_formats or ["png"])[0], dims[0], dims[1], 0, True))
            continue
        img = await load_image_ref(
            ref, label=f"image {i}", policy=policy, resolve_id=rt.store.find, http=await rt.http()
        )
        facts.append(img.facts())
    return facts


async def estimate(rt: Runtime, call: CheckedCall, client_roots: list[Any] | None = None) -> Estimate:
    """Price a call that passed `validation.check_call`, reading its inputs as the edit would.

    Raises:
        ValidationProblem, InputError: exactly what the real call would refuse.
    """
    from mcp_images.inputs.references import load_image_ref
    from mcp_images.pricing.costs import PricedCall, estimate_cost

    facts = await _input_facts(rt, call, client_roots)
    overlays: dict[str, InputFacts] = {}
    for name in ("mask", "markup"):
        ref = call.params.get(name)
        if ref is not None:
            img = await load_image_ref(
                ref, label=f"the {name}", policy=rt.input_policy(client_roots), resolve_id=rt.store.find,
                http=await rt.http(), is_mask=True,
            )  # fmt: skip
            overlays[name] = img.facts()
    if call.edit:
        check_edit_inputs(call.spec, facts, overlays.get("mask"), markup=overlays.get("markup"))
    sizes = [(f.width, f.height) for f in facts]
    n = call.params.n or 1
    priced = PricedCall.of(call.spec, call.params, n=n, input_sizes=sizes, edit=call.edit)
    breakdown = estimate_cost(rt.prices, priced)
    return Estimate(
        model=call.params.model, params=call.params, breakdown=breakdown, input_sizes=sizes, warnings=call.warnings
    )

"""estimate_cost's work: validate the call as the real one would be, then price it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcp_images.catalog.edit_rules import check_edit_inputs
from mcp_images.catalog.models import ImageParams, check_params
from mcp_images.pricing.costs import CostBreakdown
from mcp_images.runtime import Runtime
from mcp_images.server.args import EstimateArgs
from mcp_images.work.tools import to_params


@dataclass
class Estimate:
    model: str
    params: ImageParams
    breakdown: CostBreakdown
    input_sizes: list[tuple[int, int]]
    warnings: list[str]


async def estimate(rt: Runtime, args: EstimateArgs, client_roots: list[Any] | None = None) -> Estimate:
    """Validate the call as the real one would be, then price it from the price table.

    Input images given as references are read only for their dimensions (and checked like an
    edit's); ``WIDTHxHEIGHT`` strings stand in for images.

    Raises:
        ValidationProblem, InputError: exactly what the real call would refuse.
    """
    from mcp_images.catalog.edit_rules import InputFacts
    from mcp_images.catalog.models import parse_size
    from mcp_images.inputs.references import load_image_ref
    from mcp_images.pricing.costs import estimate_cost

    refs = args.image_list()
    edit = bool(refs) or args.mask is not None or args.input_fidelity is not None
    model = args.model or rt.settings.default_model
    spec = rt.catalog.get(model)
    params = to_params(args, model)
    warnings = check_params(spec, ImageParams(**{**params.__dict__, "prompt": args.prompt or "x"}), edit=edit)
    facts: list[InputFacts] = []
    policy = rt.input_policy(client_roots)
    for i, ref in enumerate(refs, 1):
        dims = parse_size(ref)
        if dims is not None:
            facts.append(InputFacts(f"image {i}", (spec.edit_formats or ["png"])[0], dims[0], dims[1], 0, True))
            continue
        img = await load_image_ref(
            ref, label=f"image {i}", policy=policy, resolve_id=rt.store.find, http=await rt.http()
        )
        facts.append(img.facts())
    mask_facts = None
    if args.mask is not None:
        mask = await load_image_ref(
            args.mask, label="the mask", policy=policy, resolve_id=rt.store.find, http=await rt.http(), is_mask=True
        )
        mask_facts = mask.facts()
    if edit:
        check_edit_inputs(spec, facts, mask_facts)
    sizes = [(f.width, f.height) for f in facts]
    breakdown = estimate_cost(
        rt.prices,
        model=spec.name if spec.known else model,
        n=args.n or 1,
        size=args.size,
        quality=args.quality,
        prompt=args.prompt,
        input_sizes=sizes,
        input_fidelity=args.input_fidelity,
        partial_images=(args.partial_images or 0) if args.stream else 0,
        edit=edit,
        aliases=spec.all_names,
    )
    return Estimate(model=model, params=params, breakdown=breakdown, input_sizes=sizes, warnings=warnings)

"""Item text from a template: segments such as ``"Brand: {brand}"`` joined by a separator, missing fields omitted.

A template is a sequence of segments; each segment names one or more catalogue fields in ``{braces}``: `title`,
`brand`, `categories` (paths as "a > b > c", several joined by ", "), `price` (two decimals), `description`, or a
source-specific text field of `Catalog.extra` (e.g. `idgenrec_textual_id` for the P5 Sports files). A segment is left
out when any field it names is missing or empty, so "Brand: " never appears without a brand.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

from jaxrec.data.types import Catalog, DataError

DEFAULT_TEMPLATE = ("{title}", "Brand: {brand}", "Categories: {categories}", "Price: {price}")
EMPTY_TEXT_POLICIES = ("error", "raw_id")
_FIELDS = {"title": "titles", "brand": "brands", "categories": "categories", "price": "prices",
           "description": "descriptions"}


def template_fields(template: Sequence[str]) -> list[list[str]]:
    """The field names of each segment; raises DataError for a segment that names none."""
    fields = []
    for segment in template:
        names = [name for _, name, _, _ in string.Formatter().parse(segment) if name]
        if not names:
            raise DataError(f"text template segment {segment!r} names no field (expected e.g. '{{title}}')")
        fields.append(names)
    return fields


def _field_values(catalog: Catalog, name: str) -> Sequence[object] | None:
    if name in _FIELDS:
        return getattr(catalog, _FIELDS[name])
    if name in catalog.extra:
        return catalog.extra[name]
    raise DataError(f"text template names unknown field {name!r}; known: {sorted(_FIELDS)} and this catalogue's "
                    f"extra fields {sorted(catalog.extra)}")


def _render(name: str, value: object) -> str:
    if value is None:
        return ""
    if name == "categories":
        paths = [" > ".join(path) for path in value if path]  # type: ignore[union-attr]
        return ", ".join(dict.fromkeys(paths))
    if name == "price":
        return f"{float(value):.2f}"  # type: ignore[arg-type]
    return " ".join(str(value).split())


def item_texts(catalog: Catalog, template: Sequence[str] = DEFAULT_TEMPLATE, separator: str = ". ",
               empty_text: str = "error") -> tuple[list[str], dict[str, int]]:
    """Render every item's text (index = item_id - 1) and count what each field contributed.

    Items whose text comes out empty raise DataError (`empty_text="error"`) or get "item <raw id>"
    (`empty_text="raw_id"`, counted in the returned report as `empty_text_fallbacks`).
    """
    if empty_text not in EMPTY_TEXT_POLICIES:
        raise DataError(f"empty_text must be one of {EMPTY_TEXT_POLICIES}, got {empty_text!r}")
    segment_fields = template_fields(template)
    values = {name: _field_values(catalog, name) for names in segment_fields for name in names}
    report = {f"items_with_{name}": 0 for name in values}
    texts, empty = [], []
    for index in range(catalog.num_items):
        rendered = {name: _render(name, None if column is None else column[index]) for name, column in values.items()}
        for name, text in rendered.items():
            report[f"items_with_{name}"] += bool(text)
        parts = [segment.format(**rendered) for segment, names in zip(template, segment_fields)
                 if all(rendered[name] for name in names)]
        text = separator.join(parts)
        if not text:
            empty.append(index)
            text = f"item {catalog.raw_ids[index]}"
        texts.append(text)
    if empty and empty_text == "error":
        ids = [i + 1 for i in empty[:10]]
        raise DataError(f"{len(empty)} of {catalog.num_items} items have no text under template {list(template)} "
                        f"(item ids {ids}{' ...' if len(empty) > 10 else ''}); add fields to the template or set "
                        f"empty_text='raw_id' to fall back to 'item <raw id>'")
    report["empty_text_fallbacks"] = len(empty)
    return texts, report

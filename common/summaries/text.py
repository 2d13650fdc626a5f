"""Markdown for TensorBoard's Text dashboard, which renders code blocks and tables."""


def markdown_code_block(text: str) -> str:
    """Wraps text in a fenced Markdown code block, so TensorBoard's Text tab keeps its layout."""
    return f"```\n{text.rstrip()}\n```"


def markdown_table(rows: dict[str, object]) -> str:
    """Renders `name: value` pairs as a two-column Markdown table (TensorBoard renders tables)."""
    lines = ["| setting | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows.items()]
    return "\n".join(lines)

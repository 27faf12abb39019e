"""Key figures: the few numbers a lesson publishes, for humans and for the course runner.

A notebook calls :func:`show_key_figures` once or more; the output shows a small table and
carries the raw values under :data:`KEY_FIGURES_MIME`, which :func:`extract_key_figures`
collects from the executed notebook (``python -m course_lib.notebooks course`` does that)::

    show_key_figures({"ndcg@10": 0.4123, "n_products": 5000}, lesson="02")
"""
from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any, Mapping, Union

if TYPE_CHECKING:  # nbformat is a dev dependency; notebooks in Colab don't need it
    import nbformat

KEY_FIGURES_MIME = "application/vnd.course-key-figures+json"

Figure = Union[float, int, str]


def _clean(figures: Mapping[str, Any]) -> dict[str, Figure]:
    """Check names and values; numpy scalars become Python numbers, NaN/inf become strings."""
    clean: dict[str, Figure] = {}
    for name, value in figures.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"key figure names must be non-empty strings, got {name!r}")
        if hasattr(value, "item") and not isinstance(value, (str, bytes)):
            value = value.item()  # numpy scalar -> Python scalar
        if isinstance(value, bool):
            value = int(value)
        if not isinstance(value, (int, float, str)):
            raise TypeError(
                f"key figure {name!r} must be a number or a string, got {type(value).__name__}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)  # JSON has no NaN/inf
        clean[name] = value
    return clean


def _fmt(value: Figure) -> str:
    return repr(round(value, 4)) if isinstance(value, float) else str(value)


def _text(figures: dict[str, Figure], lesson: str | None) -> str:
    title = f"Key figures — lesson {lesson}" if lesson else "Key figures"
    if not figures:
        return f"{title}: (none)"
    width = max(len(name) for name in figures)
    rows = [f"  {name.ljust(width)}  {_fmt(value)}" for name, value in figures.items()]
    return "\n".join([title, *rows])


def _html(figures: dict[str, Figure], lesson: str | None) -> str:
    title = f"Key figures — lesson {html.escape(lesson)}" if lesson else "Key figures"
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td style=\"text-align:right\">"
        f"{html.escape(_fmt(value))}</td></tr>"
        for name, value in figures.items()
    )
    return (f"<table><caption>{title}</caption>"
            f"<thead><tr><th>figure</th><th>value</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def show_key_figures(figures: Mapping[str, Figure], lesson: str | None = None) -> None:
    """Display ``figures`` as a table and attach them as :data:`KEY_FIGURES_MIME` data.

    Insertion order is kept; floats are shown rounded to 4 decimals (the attached data is
    exact). Outside IPython the table is printed.
    """
    clean = _clean(figures)
    text = _text(clean, lesson)
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with every notebook
        get_ipython = None  # type: ignore[assignment]
    if get_ipython is None or get_ipython() is None:
        print(text)
        return
    from IPython.display import display

    bundle = {"text/plain": text, "text/html": _html(clean, lesson), KEY_FIGURES_MIME: clean}
    metadata = {KEY_FIGURES_MIME: {"lesson": lesson}} if lesson else {}
    display(bundle, raw=True, metadata=metadata)


def extract_key_figures(nb: "nbformat.NotebookNode") -> dict[str, Figure]:
    """Merge every :data:`KEY_FIGURES_MIME` output of an executed notebook (later ones win)."""
    merged: dict[str, Figure] = {}
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            data = output.get("data", {})
            if KEY_FIGURES_MIME in data:
                merged.update(data[KEY_FIGURES_MIME])
    return merged

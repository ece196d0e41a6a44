"""Write the Colab edition of every chapter: `colab/<chapter>.ipynb` (what the Colab buttons open).

Colab renders Markdown with a plain Markdown renderer, so a chapter's MyST markup would show there as raw
text. The edition is the same notebook with every piece of markup resolved into plain Markdown:

- ``{glue:text}`name` `` -> the value the book build glued (myst-nb's `<chapter>.glue.json` beside the
  executed notebook in `_build/jupyter_execute`, so it is the very text the book shows);
- ``{cite:p}`key` `` -> "(Wang et al., 2020)" (author-year, as the book), with a reference list at the end;
- ```` ```{literalinclude} ```` -> the listing itself as a fenced Python block (read from the package
  with Sphinx's own literalinclude reader, so it is the book's listing), and where it comes from;
- admonitions -> block quotes; labels and MyST comments removed;
- a ``:::{dropdown}`` (an exercise's hint) -> a hidden cell of its own (a Colab form cell, ``#@title``
  and ``cellView: form``: the title shows, the text opens with a double-click), as the book collapses it;
- code cells the book hides (tags ``hide-cell``, ``hide-input``: worked solutions) or removes (``remove-input``,
  ``remove-cell``: the machinery that records the numbers the text quotes) -> hidden form cells, which still
  run, so every later cell finds what they computed.

Code cells are the chapter's own, unchanged, outputs cleared, except the setup cell (cell 0), which is
`scripts/setup_cell.py`'s with RELEASE = the commit the book was built from, so Colab installs the code
the text describes. Anything else written in MyST syntax stops the script with the chapter and markup.

    python scripts/colab_edition.py            # after `make book`: write colab/*.ipynb (`make colab`)
    python scripts/colab_edition.py --check    # exit 1 if an edition no longer matches its chapter

--check rebuilds each edition from its chapter with the glued values and the commit recorded in the
edition's metadata, so values that differ between runs (timings) never make it fail; a changed cell,
code, listing, citation or a new glue name does.
"""

from __future__ import annotations

import ast
import copy
import datetime
import json
import pathlib
import re
import subprocess
import sys
import types

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import setup_cell  # noqa: E402

EDITION = ROOT / "colab"
EXECUTED = ROOT / "_build" / "jupyter_execute"
sys.path.insert(0, str(ROOT))
from cspnet_lab._names import GLUE_PREFIX  # noqa: E402 (defined once)
ADMONITIONS = {"note", "warning", "tip", "important", "hint", "caution", "attention", "danger", "error",
               "seealso", "admonition"}
ROLE_OR_CODE = re.compile(r"\{([a-zA-Z][\w:-]*)\}`([^`]*)`|(`+)(?!`).+?(?<!`)\3(?!`)", re.S)
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,}|:{3,})(?P<info>.*)$")


class MystLeft(ValueError):
    """A piece of MyST markup the generator does not know how to write as plain Markdown."""


# ---------------------------------------------------------------------------------------- inputs

def chapters() -> list[str]:
    """The chapters in _toc.yml that are notebooks, as 'book/01_dense_connectivity' (setup_cell's list)."""
    return [p.relative_to(ROOT).with_suffix("").as_posix() for p in setup_cell.chapters()]


def edition_path(chapter: str) -> pathlib.Path:
    return EDITION / f"{pathlib.Path(chapter).name}.ipynb"


def glued_values(executed_path: pathlib.Path) -> dict[str, str]:
    """name -> the text/plain the book build glued. myst-nb takes the glue records out of the executed
    notebook and writes them beside it, as <chapter>.glue.json."""
    glue_path = executed_path.with_suffix(".glue.json")
    if not glue_path.exists():
        return {}
    data = json.loads(glue_path.read_text())
    return {name: out["data"]["text/plain"] for name, out in data.items() if "text/plain" in out["data"]}


def plain_text(text: str, fmt_spec: str = "") -> str:
    """What ``{glue:text}`` shows for a glued text/plain (myst-nb's format_plain_text)."""
    try:
        value = ast.literal_eval(text)
    except (SyntaxError, ValueError):
        value = text
    if not fmt_spec:
        return str(value)
    kind = fmt_spec[-1]
    if kind in "bcdoxX":
        value = int(value)
    elif kind in "eEfFgGn%":
        value = float(value)
    else:
        value = str(value)
    return format(value, fmt_spec)


def bibliography() -> dict:
    from pybtex.database import parse_file
    return parse_file(str(ROOT / "references.bib")).entries


def _surname(person) -> str:
    return " ".join(person.prelast_names + person.last_names).replace("{", "").replace("}", "")


def _authors_short(entry) -> str:
    people = entry.persons.get("author", [])
    if len(people) == 1:
        return _surname(people[0])
    if len(people) == 2:
        return f"{_surname(people[0])} and {_surname(people[1])}"
    return f"{_surname(people[0])} et al."


def reference_line(entry) -> str:
    """One entry of the reference list: authors (year). Title. Venue."""
    def clean(s):
        return s.replace("{", "").replace("}", "")
    people = ", ".join(
        " ".join(p.first_names + p.middle_names + p.prelast_names + p.last_names) for p in
        entry.persons.get("author", []))
    f = entry.fields
    venue = f.get("booktitle") or f.get("journal") or (
        f"arXiv:{f['eprint']}" if f.get("eprint") else "") or f.get("howpublished", "")
    extra = f" {clean(f['note'])}." if f.get("note") else ""
    return f"{clean(people)} ({f.get('year', 'n.d.')}). {clean(f.get('title', ''))}. *{clean(venue)}*.{extra}"


# ---------------------------------------------------------------------------------------- markup

def _role(name: str, content: str, ctx) -> str:
    if name in ("glue", "glue:", "glue:any", "glue:text", "glue:md"):
        key, _, fmt = content.partition(":") if name == "glue:text" else (content, "", "")
        if "::" in key:
            raise MystLeft(f"glue from another document: {content!r}")
        if key not in ctx.glue:
            raise KeyError(f"{ctx.chapter}: glue name {key!r} has no value (run `make book`, then "
                           "`make colab`)")
        ctx.used_glue.add(key)
        return plain_text(ctx.glue[key], fmt)
    if name.startswith("cite"):
        keys = [k.strip() for k in content.split(",") if k.strip()]
        for k in keys:
            if k not in ctx.bib:
                raise MystLeft(f"citation {k!r} is not in references.bib")
            if k not in ctx.cited:
                ctx.cited.append(k)
        if name in ("cite:t", "cite:ct"):
            return "; ".join(f"{_authors_short(ctx.bib[k])} ({ctx.bib[k].fields['year']})" for k in keys)
        inner = "; ".join(f"{_authors_short(ctx.bib[k])}, {ctx.bib[k].fields['year']}" for k in keys)
        return f"({inner})" if name in ("cite", "cite:p", "cite:ps") else inner
    if name == "math":
        return f"${content}$"
    if name in ("ref", "doc", "numref", "term"):
        m = re.match(r"(.*?)\s*<[^>]+>$", content)
        return m.group(1) if m else content
    raise MystLeft(f"role {{{name}}}`{content}`")


def _resolve_roles(text: str, ctx) -> str:
    # A role is MyST syntax only outside inline code: match code spans too, and leave them as they are.
    def sub(m):
        return _role(m.group(1), m.group(2), ctx) if m.group(1) else m.group(0)
    return ROLE_OR_CODE.sub(sub, text)


def _literalinclude(argument: str, options: dict, ctx) -> str:
    from sphinx.directives.code import LiteralIncludeReader
    path = (ROOT / "book" / argument).resolve()
    options = {k: ("" if v is None else str(v)) for k, v in options.items()}
    try:
        text, _ = LiteralIncludeReader(str(path), options, types.SimpleNamespace(source_encoding="utf-8")).read()
    except (OSError, ValueError) as err:                # the book build fails on the same listing
        raise MystLeft(f"literalinclude {argument}: {err}") from None
    ctx.listings.append(text)
    rel = path.relative_to(ROOT).as_posix()
    where = f"`{rel}`" + (f", `{options['pyobject']}`" if "pyobject" in options else "")
    lang = options.get("language") or ("python" if rel.endswith(".py") else "")
    return f"*From {where} (the package this notebook installs):*\n\n```{lang}\n{text.rstrip()}\n```"


def _directive(name: str, argument: str, body: list[str], ctx) -> str:
    options, i = {}, 0
    option_lines = []
    while i < len(body) and re.match(r"^:[\w-]+:", body[i]):
        option_lines.append(body[i])
        i += 1
    if option_lines:
        # MyST reads the option block as YAML
        options = yaml.safe_load("\n".join(re.sub(r"^:([\w-]+):", r"\1:", l) for l in option_lines)) or {}
    content = "\n".join(body[i:]).strip("\n")
    if name == "literalinclude":
        return _literalinclude(argument.strip(), options, ctx)
    if name in ADMONITIONS:
        title = argument.strip() or name.capitalize()
        inner = convert_markdown(content, ctx)
        return "\n".join([f"> **{title}**", ">"] + [f"> {l}".rstrip() for l in inner.splitlines()])
    if name == "math":
        return f"$$\n{content}\n$$"
    if name in ("code", "code-block", "sourcecode"):
        return f"```{argument.strip()}\n{content}\n```"
    raise MystLeft(f"directive {{{name}}} {argument}".strip())


def convert_markdown(text: str, ctx) -> str:
    """A Markdown cell's MyST source -> plain CommonMark (+ $math$, which Colab renders)."""
    lines = text.split("\n")
    out, prose = [], []

    def flush():
        if prose:
            block = "\n".join(prose)
            block = _resolve_roles(block, ctx)
            out.append(block)
            prose.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        m = FENCE.match(line)
        if m:
            fence, info = m.group("fence"), m.group("info").strip()
            j = i + 1
            while j < len(lines) and not (lines[j].strip().startswith(fence[0] * len(fence))
                                          and lines[j].strip().strip(fence[0]) == ""):
                j += 1
            body = lines[i + 1:j]
            flush()
            d = re.match(r"^\{([\w:-]+)\}\s*(.*)$", info)
            if d:
                out.append(_directive(d.group(1), d.group(2), body, ctx))
            elif fence[0] == ":":
                raise MystLeft(f"colon fence {line!r}")
            else:                                      # an ordinary fenced code block: as it is
                out.append("\n".join(lines[i:j + 1]))
            i = j + 1
            continue
        if re.match(r"^\s*\([\w.:-]+\)=\s*$", line) or re.match(r"^%", line) or line.strip() == "+++":
            i += 1                                     # MyST target label, comment, block break
            continue
        prose.append(line)
        i += 1
    flush()
    return "\n".join(out)


# ---------------------------------------------------------------------------------------- notebook

_lines = setup_cell._lines


def pages_url() -> str:
    """The published book (GitHub Pages of the repository in _config.yml)."""
    org, repo = setup_cell.repository().rstrip("/").split("/")[-2:]
    return f"https://{org}.github.io/{repo}"


DROPDOWN = re.compile(r"^(?P<fence>:{3,}|`{3,})\{dropdown\}\s*(?P<title>.*)$")
HIDDEN_TAGS = {"hide-cell": "book", "hide-input": "book", "remove-input": "machinery", "remove-cell": "machinery"}
MACHINERY_TITLE = "Book machinery: records the numbers the text quotes (double-click to show)"


def split_dropdowns(text: str) -> list[tuple[str, str, str]]:
    """A Markdown cell's source as pieces: ("md", "", text) and ("dropdown", title, body)."""
    pieces, prose, lines, i = [], [], text.split("\n"), 0
    while i < len(lines):
        m = DROPDOWN.match(lines[i].strip())
        if not m:
            prose.append(lines[i])
            i += 1
            continue
        fence, j = m.group("fence"), i + 1
        while j < len(lines) and lines[j].strip() != fence:
            j += 1
        if j == len(lines):
            raise MystLeft(f"dropdown {lines[i]!r} is never closed")
        if "\n".join(prose).strip():
            pieces.append(("md", "", "\n".join(prose)))
        prose = []
        body = [line for line in lines[i + 1:j] if not re.match(r"^:[\w-]+:", line)]
        pieces.append(("dropdown", m.group("title").strip() or "Details", "\n".join(body)))
        i = j + 1
    if "\n".join(prose).strip() or not pieces:
        pieces.append(("md", "", "\n".join(prose)))
    return pieces


def form_cell(title: str, code: str, role: str = "hidden") -> dict:
    """A Colab form cell: Colab shows the title and hides the code until it is double-clicked. ``role``
    ("hint": made from a dropdown, not one of the chapter's code cells) is kept in the cell's metadata."""
    title = " ".join(title.split())
    return {"cell_type": "code", "execution_count": None, "metadata": {"cellView": "form", "cspnet_lab": role},
            "outputs": [], "source": _lines(f"#@title {title}\n{code}".rstrip("\n"))}


def strip_form_title(code: str) -> str:
    """A cell's code without the ``#@title`` line this script put in front of it."""
    return code.split("\n", 1)[1] if code.startswith("#@title ") and "\n" in code else code


def _hidden_title(cell: dict, text: str) -> str | None:
    tags = set(cell.get("metadata", {}).get("tags", []))
    kinds = {HIDDEN_TAGS[t] for t in tags if t in HIDDEN_TAGS}
    if not kinds:
        return None
    if "machinery" in kinds:
        return MACHINERY_TITLE
    first = text.split("\n", 1)[0].strip()
    label = first.lstrip("#").strip() if first.startswith("#") and not first.startswith("#@") else "Code"
    return f"{label} (double-click to show)"


def build(chapter: str, source: dict, glue: dict[str, str], commit: str, built: str) -> dict:
    """The Colab edition of `chapter` (its notebook `source`), from the book build's glued values."""
    ctx = types.SimpleNamespace(chapter=chapter, glue=glue, used_glue=set(), bib=bibliography(),
                                cited=[], listings=[])
    nb = copy.deepcopy(source)
    cells = []
    for index, cell in enumerate(nb["cells"]):
        cell = dict(cell)
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            try:
                for k, (kind, title, piece) in enumerate(split_dropdowns(text)):
                    converted = convert_markdown(piece, ctx)
                    if kind == "md":
                        new = dict(cell, source=_lines(converted))
                    else:
                        comment = "\n".join(f"# {line}".rstrip() for line in converted.strip("\n").split("\n"))
                        new = form_cell(f"{_resolve_roles(title, ctx)} (double-click to show)", comment, "hint")
                    if k and "id" in cell:                 # a split cell's pieces need ids of their own
                        new["id"] = f"{cell['id']}-{k}"
                    elif "id" in cell:
                        new["id"] = cell["id"]
                    cells.append(new)
            except MystLeft as err:
                raise MystLeft(f"{chapter}, cell {index}: {err}") from None
            continue
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
            if index == 0:
                text = setup_cell.source(commit).rstrip("\n")
            else:
                title = _hidden_title(cell, text)
                if title:
                    form = form_cell(title, text)
                    cell["source"] = form["source"]
                    cell["metadata"] = dict(cell.get("metadata", {}), cellView="form")
                    cells.append(cell)
                    continue
        cell["source"] = _lines(text)
        cells.append(cell)
    # A note under the chapter's title: what this copy is.
    title_at = next(i for i, c in enumerate(cells) if c["cell_type"] == "markdown")
    page = f"{pages_url()}/{chapter}.html"
    note = (f"> **Colab edition** of a chapter of [*CSPNet, measured*]({page}), with its numbers, citations "
            f"and code listings written out. The numbers in the text are those of the book's build "
            f"({built}); the cells recompute them on your runtime, and each cell that computes one shows "
            f"it as `name = value`. The first cell installs `cspnet_lab` at commit `{commit[:12]}`, the "
            f"code this text was built from.")
    cells.insert(title_at + 1, {"cell_type": "markdown", "metadata": {}, "source": _lines(note)})
    if ctx.cited:
        refs = "## References\n\n" + "\n".join(f"- {reference_line(ctx.bib[k])}" for k in ctx.cited)
        cells.append({"cell_type": "markdown", "metadata": {}, "source": _lines(refs)})
    nb["cells"] = cells
    nb["metadata"] = dict(nb.get("metadata", {}))
    nb["metadata"]["colab"] = {"provenance": [], "toc_visible": True}
    nb["metadata"]["cspnet_lab"] = {"source": f"{chapter}.ipynb", "commit": commit, "built": built,
                                    "glue": {k: glue[k] for k in sorted(ctx.used_glue)},
                                    "listings": len(ctx.listings)}
    return nb


def dumps(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def head_commit() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def built_on(executed: dict) -> str:
    """'CPU: ..., 2026-11-28' from the chapter's "running on" line, else the date only."""
    date = datetime.date.today().isoformat()
    for cell in executed["cells"]:
        for out in cell.get("outputs", []):
            text = "".join(out.get("text", ""))
            m = re.search(r"running on (.+)", text)
            if m:
                return f"{m.group(1).strip()}, {date}"
    return date


def rebuild_from_edition(chapter: str) -> tuple[dict, dict]:
    """(committed edition, the edition rebuilt from the chapter with the committed values)."""
    committed = json.loads(edition_path(chapter).read_text())
    meta = committed["metadata"]["cspnet_lab"]
    source = json.loads((ROOT / f"{chapter}.ipynb").read_text())
    return committed, build(chapter, source, meta["glue"], meta["commit"], meta["built"])


def check() -> list[str]:
    problems = []
    for chapter in chapters():
        if not edition_path(chapter).exists():
            problems.append(f"{chapter}: no Colab edition {edition_path(chapter).relative_to(ROOT)}")
            continue
        try:
            committed, fresh = rebuild_from_edition(chapter)
        except (KeyError, MystLeft) as err:
            problems.append(f"{chapter}: {err}")
            continue
        if dumps(committed) != dumps(fresh):
            a, b = committed["cells"], fresh["cells"]
            where = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            problems.append(f"{chapter}: the edition differs from the chapter from cell {where} on")
    extra = {p.name for p in EDITION.glob("*.ipynb")} - {edition_path(c).name for c in chapters()}
    problems += [f"colab/{name}: no such chapter in _toc.yml" for name in sorted(extra)]
    return problems


def main(argv: list[str]) -> int:
    if "--check" in argv:
        problems = check()
        for p in problems:
            print(p)
        if problems:
            print("The Colab edition is out of date: run `make book`, then `make colab`.")
        return 1 if problems else 0
    executed_dir = EXECUTED
    if "--executed" in argv:
        executed_dir = pathlib.Path(argv[argv.index("--executed") + 1])
    commit = head_commit()
    EDITION.mkdir(exist_ok=True)
    for chapter in chapters():
        executed_path = executed_dir / f"{chapter}.ipynb"
        if not executed_path.exists():
            print(f"{executed_path} is missing: run `make book` first")
            return 1
        executed = json.loads(executed_path.read_text())
        source = json.loads((ROOT / f"{chapter}.ipynb").read_text())
        nb = build(chapter, source, glued_values(executed_path), commit, built_on(executed))
        edition_path(chapter).write_text(dumps(nb))
        meta = nb["metadata"]["cspnet_lab"]
        print(f"wrote {edition_path(chapter).relative_to(ROOT)}: {len(meta['glue'])} glued values, "
              f"{meta['listings']} listings, setup cell at {commit[:12]}")
    for stale in set(EDITION.glob("*.ipynb")) - {edition_path(c) for c in chapters()}:
        stale.unlink()
        print(f"removed {stale.relative_to(ROOT)} (not a chapter)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

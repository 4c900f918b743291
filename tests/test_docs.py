"""What the docs say about the project's files is true: every file or folder they (and the module
docstrings) name exists, and docs/architecture.md's package layout lists every module there is and
no other."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# a path inside the project: docs/x.md, fersnet/data/faces.py, bench/results/...
REFERENCE = re.compile(r"(?<![\w./$-])((?:docs|fersnet|bench|tests|workflow|examples)/[\w./-]*[\w/])")
KNOWN_SUFFIXES = {".md", ".py", ".smk", ".json", ".sh", ".yaml", ".yml", ".png", ".csv", ".txt", ".toml", ".tex",
                  ".j2", ".rst", ".tsv", ".npy", ".pt", ".cfg", ".html", ".pdf"}
# a line that writes a file: the path it names is an output, made when the command runs
WRITES = re.compile(r"--out\b|--write\b|\bOUT=|\$OUT\b|pdftoppm|> ?\S+\.json")


def text_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    files += sorted((ROOT / "fersnet").rglob("*.py")) + sorted((ROOT / "workflow").rglob("*.smk"))
    return files + sorted((ROOT / "bench").glob("*.py")) + [ROOT / "workflow" / "Snakefile", ROOT / "dvc.yaml"]


def referenced_path(ref: str) -> Path | None:
    """The file or folder a reference names, or None when it names none (an MLflow experiment
    `fersnet/ckplus` or a run `fersnet/seed1/fold3`); a dotted module attribute
    (`fersnet/metrics/fold_stats.run_stats`) names its module."""
    path = Path(ref.split("#")[0].rstrip("."))
    if ref.endswith("/"):
        return path
    if path.suffix in KNOWN_SUFFIXES:
        return path
    if path.suffix:                                        # module.attribute
        return path.with_suffix(".py")
    if (ROOT / path).exists() or (ROOT / path.with_suffix(".py")).exists():
        return None
    # a bare name: a folder when its parent is one the project has, else not a path at all
    return path if (ROOT / path.parent).is_dir() and path.parent != Path("fersnet") and "/" in str(path.parent) \
        else None


def test_every_file_the_docs_and_docstrings_name_exists():
    missing = []
    for f in text_files():
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if WRITES.search(line):
                continue
            for m in REFERENCE.finditer(line):
                ref = m.group(1)
                if any(c in ref for c in "<*{"):
                    continue
                path = referenced_path(ref)
                if path is not None and not (ROOT / path).exists():
                    missing.append(f"{f.relative_to(ROOT)}:{n}: {ref}")
    assert not missing, "\n".join(missing)


def layout_modules() -> set[str]:
    """The modules and folders docs/architecture.md's "Package layout" table lists, as paths."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Package layout", 1)[1].split("\n## ", 1)[0]
    listed = set()
    for row in section.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`fersnet"):
            continue
        folder = re.findall(r"`([\w./]+)`", cells[0])[0]
        folder = folder if folder.endswith("/") else str(Path(folder).parent) + "/"
        # `synth/` (stand-in writers: `ckplus.py`, ...): names in a sub-folder's parentheses lie in it
        depth, sub = 0, ""
        for m in re.finditer(r"`([\w./]+)`|[()]", cells[0] + " " + cells[1]):
            if m.group(0) in "()":
                depth += 1 if m.group(0) == "(" else -1
                continue
            name = m.group(1)
            if depth == 0:
                sub = name if name.endswith("/") and not name.startswith("fersnet/") else ""
                path = name if name.startswith("fersnet/") else folder + name
            elif sub and name.endswith(".py"):
                path = folder + sub + name
            else:
                continue                                  # a description: `fersnet` verbs, `make demo`
            if path.endswith((".py", "/")):
                listed.add(path)
    return listed


def test_the_architecture_layout_lists_every_module_and_only_those():
    listed = layout_modules()
    on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / "fersnet").rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py")}
    folders = {name for name in listed if name.endswith("/")}
    covered = {m for m in on_disk if any(m.startswith(f) and f.count("/") > 1 for f in folders)}
    assert not sorted(on_disk - covered - listed), "modules the layout table leaves out"
    assert not sorted(name for name in listed if not (ROOT / name).exists()), "listed, but not there"
    assert not sorted(name for name in folders if name.count("/") > 1 and not any(
        m.startswith(name) for m in on_disk)), "listed folders without modules"


def test_every_docs_page_is_in_the_readmes_documentation_index():
    """README's "Documentation" table links every page of docs/ (a folder of pages by the folder),
    and every link in it leads to a page or folder that is there."""
    readme = (ROOT / "README.md").read_text()
    index = readme.split("**Documentation.**", 1)[1].split("\n## ", 1)[0]
    linked = set(re.findall(r"\]\((docs/[\w./-]*)\)", index))
    assert linked and all((ROOT / link).exists() for link in linked), sorted(linked)
    pages = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")}
    folders = {p.relative_to(ROOT).as_posix() + "/" for p in (ROOT / "docs").iterdir()
               if p.is_dir() and any(p.glob("*.md"))}
    assert sorted(pages | folders) == sorted(linked)


def test_the_user_guides_keep_no_run_diary():
    """The dated history of measurements lives in docs/lab-notebook.md: a guide says where its numbers
    came from (a date with each), it does not log run after run (performance.md, training.md and scoring.md
    held 14-28 dates each)."""
    dated = re.compile(r"(?<![\w-])20\d\d-\d\d-\d\d(?![\w-])")      # not a file name's date
    for page in sorted((ROOT / "docs").rglob("*.md")):
        if page.name == "lab-notebook.md":
            continue
        dates = dated.findall(page.read_text())
        assert len(dates) <= 12, f"{page.relative_to(ROOT)}: {len(dates)} dates; the history goes to docs/lab-notebook.md"
    assert len(dated.findall((ROOT / "docs" / "lab-notebook.md").read_text())) >= 20


def slug(heading: str) -> str:
    """The anchor a Markdown heading gets on GitHub: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_anchor_a_link_names_is_a_heading_of_its_page():
    files = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    broken = []
    for f in files:
        for target, anchor in re.findall(r"\]\(([\w./-]*\.md|)#([\w-]+)\)", f.read_text()):
            page = (f.parent / target) if target else f
            headings = {slug(h) for h in re.findall(r"^#+ (.+)$", page.read_text(), re.M)}
            if anchor not in headings:
                broken.append(f"{f.relative_to(ROOT)}: {target}#{anchor}")
    assert not broken, broken

"""Execute the book's notebooks with papermill, then render them with Jupyter Book.

The notebooks in ``book/`` are committed without outputs. This module runs each of them with
the chosen parameters (``preset``, ``device``, ...) into a build folder, and renders that
folder to HTML. Jupyter Book never executes anything itself (``execute_notebooks: "off"``).

Command line (from the repository root)::

    python -m csoa_nb.book.runbook execute --preset cpu --build-dir _build/cpu \
        [--only 00_introduction]
    python -m csoa_nb.book.runbook build --build-dir _build/cpu --html-out _build [--strict]
    python -m csoa_nb.book.runbook all --preset cpu        # both steps; HTML in _build/html
    python -m csoa_nb.book.runbook strip book/02_cam_baseline.ipynb   # after saving it in Lab

The executed copy of ``book/NN_x.ipynb`` is ``<build-dir>/book/NN_x.ipynb``; the HTML of a
build lands in ``<html-out>/html`` (``index.html`` is the first chapter).

Nothing a user owns is overwritten or deleted. A build folder may not be, contain or lie inside
the source folder ``book/`` (so neither the project root nor ``book/`` itself), and neither may
``<html-out>/html``. Every folder the runbook creates (the build folder, ``<html-out>/html``)
gets a marker file, ``.csoa-runbook``; the runbook writes into, or replaces, only a folder that
holds it (or an empty one, which it then marks). Any other existing folder is refused, even
inside ``_build/``: a build folder left by a version without markers is removed by hand once
(``make clean``), since the runbook cannot tell it from a folder of the user's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import nbformat
import yaml

from csoa_nb.base.checks import check_writable_folder
from csoa_nb.engine.config import PRESETS

#: The source checkout that holds ``_toc.yml``, ``_config.yml`` and ``book/``.
REPO_ROOT = Path(__file__).resolve().parents[2]
TOC_FILE = "_toc.yml"
CONFIG_FILE = "_config.yml"
BOOK_DIR = "book"
#: Seconds one notebook cell may run before papermill stops it.
CELL_TIMEOUT_S = 3600
#: The kernel draws figures inline even when the calling process uses a headless backend
#: (an inherited ``MPLBACKEND=Agg`` would make every ``plt.show()`` in a notebook a no-op).
KERNEL_MPLBACKEND = "module://matplotlib_inline.backend_inline"
#: The file that marks a folder as created by the runbook, which may then rewrite or delete it.
MARKER = ".csoa-runbook"
MARKER_TEXT = (
    "This folder was created by `python -m csoa_nb.book.runbook`, which may overwrite or delete\n"
    "it on its next build. Delete this file to keep the runbook out of the folder.\n"
)


def _check_root(root: Path) -> Path:
    root = Path(root).resolve()
    if not (root / TOC_FILE).is_file():
        raise SystemExit(
            f"{root / TOC_FILE} not found: run this from a source checkout of csoa-book "
            "installed with `pip install -e .` (see README.md)."
        )
    return root


def _overlaps(a: Path, b: Path) -> bool:
    """Whether resolved folder ``a`` is ``b``, lies inside it or contains it."""
    return a == b or b in a.parents or a in b.parents


def _refuse_source_overlap(folder: Path, option: str, example: str, root: Path) -> None:
    """Refuse an output ``folder`` (from ``option``) that is, contains or lies inside the source
    folder ``book/``; the project root contains it."""
    book = root / BOOK_DIR
    if _overlaps(folder, book):
        if folder == root:
            what = "is the project root, which holds"
        elif folder == book:
            what = "is"
        else:
            what = "lies inside" if book in folder.parents else "contains"
        raise SystemExit(
            f"{option} would write into {folder}, which {what} the book's source folder {book}: "
            f"that would overwrite the committed notebooks. Choose a folder outside {book} that "
            f"is not the project root, e.g. {option} {example}"
        )


def _check_writable(folder: Path, option: str, example: str) -> None:
    """Refuse an output ``folder`` that cannot be written (a read-only mount, a name over the
    file system's limit, a file on its path), naming it and the fix, before any work."""
    try:
        check_writable_folder(folder, option,
                              f"choose a folder you can write, e.g. {option} {example}")
    except ValueError as error:
        raise SystemExit(str(error)) from None


def _owned(folder: Path) -> bool:
    """Whether ``folder`` was created by the runbook (it holds the marker file)."""
    return (folder / MARKER).is_file()


def _refuse_foreign(folder: Path, option: str, root: Path) -> None:
    """Refuse an existing ``folder`` that is neither the runbook's (marker) nor empty."""
    if folder.exists() and not folder.is_dir():
        raise SystemExit(f"{option}: {folder} is a file, not a folder: choose another {option}")
    if folder.is_dir() and not _owned(folder) and any(folder.iterdir()):
        hint = ""
        if root / "_build" in folder.parents:
            hint = " (`make clean` removes all of _build, e.g. a build made before these markers)"
        raise SystemExit(
            f"{folder} already exists and was not created by the runbook (it has no {MARKER} "
            f"file), so the runbook will not write into it or delete anything in it: choose "
            f"another {option}, or remove {folder} yourself{hint}"
        )


def _claim(folder: Path, option: str, root: Path) -> None:
    """Create ``folder`` with the marker file, or accept it if it is the runbook's or empty."""
    _refuse_foreign(folder, option, root)
    folder.mkdir(parents=True, exist_ok=True)
    if not _owned(folder):
        (folder / MARKER).write_text(MARKER_TEXT, encoding="utf-8")


def check_html_destination(html_out: Path, build_dir: Path, root: Path = REPO_ROOT) -> Path:
    """``html_out/html``, once it is known to be safe to replace; raises ``SystemExit`` if not.

    It may not overlap the source ``book/`` or the build folder, and if it exists it must be
    the runbook's (marker file) or empty.
    """
    root = Path(root).resolve()
    dest = Path(html_out).resolve() / "html"
    build_dir = Path(build_dir).resolve()
    _refuse_source_overlap(build_dir, "--build-dir", "_build/cpu", root)
    _refuse_source_overlap(dest, "--html-out", "_build", root)
    if _overlaps(dest, build_dir):
        raise SystemExit(
            f"--html-out puts the HTML in {dest}, which overlaps the build folder {build_dir}: "
            "replacing it would destroy the executed notebooks (or mix the HTML into the "
            "sources). Choose an --html-out outside the build folder, e.g. --html-out _build"
        )
    _refuse_foreign(dest, "--html-out", root)
    return dest


def _toc_entries(toc: dict) -> list[str]:
    """The ``file`` entries of a jb-book table of contents, root first, in reading order."""
    entries = [toc["root"]]

    def walk(items: list[dict]) -> None:
        for item in items:
            if "file" in item:
                entries.append(item["file"])
            for key in ("parts", "chapters", "sections"):
                walk(item.get(key, []))

    walk(toc.get("parts", []) + toc.get("chapters", []))
    return entries


def notebooks_from_toc(toc_path: Path) -> list[Path]:
    """Notebooks named in ``_toc.yml``, in the order of the table of contents.

    Returns paths relative to the folder of ``toc_path`` (e.g. ``book/03_confseg.ipynb``).
    A toc entry may omit the ``.ipynb`` suffix, as Jupyter Book allows.
    """
    toc_path = Path(toc_path)
    with toc_path.open(encoding="utf-8") as f:
        toc = yaml.safe_load(f)
    if not isinstance(toc, dict) or "root" not in toc:
        raise ValueError(f"{toc_path} has no 'root' entry: it is not a jb-book table of contents")
    notebooks = []
    for entry in _toc_entries(toc):
        path = Path(entry)
        if path.suffix != ".ipynb":
            path = path.with_name(path.name + ".ipynb")
        notebooks.append(path)
    return notebooks


def _select(notebooks: list[Path], only: list[str] | None) -> list[Path]:
    """Keep the notebooks named in ``only`` (by stem, file name or path), in toc order."""
    if not only:
        return notebooks
    wanted = {Path(name).stem for name in only}
    unknown = wanted - {nb.stem for nb in notebooks}
    if unknown:
        names = ", ".join(nb.stem for nb in notebooks)
        raise SystemExit(f"--only names {sorted(unknown)}, which _toc.yml lacks; it has: {names}")
    return [nb for nb in notebooks if nb.stem in wanted]


@contextmanager
def _environ(**values: str):
    """Set environment variables for the duration of a block (the kernel inherits them)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _show_run_parameters(path: Path) -> None:
    """Prepare an executed copy for the static book: hide the default ``parameters`` cell, so
    the book shows only the values the run used (papermill's ``injected-parameters`` cell
    right after it), and drop the saved widget state, whose rendering would load scripts from
    the internet (the chapters show a static figure after each widget instead)."""
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
    nbformat.write(nb, path)


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """The notebook at ``path``; a ValueError naming the file when it is none (not a
    ``.ipynb`` file, not JSON, not in the notebook format)."""
    path = Path(path)
    if not path.is_file() or path.suffix != ".ipynb":
        raise ValueError(
            f"{path} is not a notebook file: name one, e.g. book/02_cam_baseline.ipynb"
        )
    fix = (f"restore it (e.g. `git checkout -- {path}`, or JupyterLab's last checkpoint) or "
           "repair it in a text editor")
    try:
        return nbformat.read(path, as_version=4)
    except nbformat.reader.NotJSONError as error:
        why = f"it is not valid JSON ({error})"
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as error:
        why = f"{type(error).__name__}: {error}"
    raise ValueError(f"{path} is not a notebook: {why}: {fix}")


def strip_notebook(path: Path) -> bool:
    """Make a chapter committable again after JupyterLab saved it with its results.

    Removes every code cell's outputs and execution count and the saved widget state
    (``metadata.widgets``, which `make lab` writes on every save, see README.md), in place;
    tags, cell ids and the kernelspec stay. Returns True if the file changed.
    """
    path = Path(path)
    nb = read_notebook(path)
    changed = nb.metadata.pop("widgets", None) is not None
    for cell in nb.cells:
        if cell.cell_type == "code":
            changed |= bool(cell.outputs) or cell.execution_count is not None
            cell.outputs = []
            cell.execution_count = None
    if changed:
        nbformat.write(nb, path)
    return changed


def _int_parameter(name: str, value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ValueError(f"parameter {name} must be an integer, got {value!r}") from None


def execute(
    preset: str,
    build_dir: Path,
    only: list[str] | None = None,
    device: str = "cpu",
    seed: int = 0,
    data_root: str = "data",
    output_dir: str = "runs",
    root: Path = REPO_ROOT,
) -> list[Path]:
    """Execute the book's notebooks with papermill into ``build_dir/book/``.

    Each notebook runs in a fresh ``python3`` kernel whose working directory is the repository
    root, with the parameters ``preset``, ``data_root``, ``device``, ``seed`` and
    ``output_dir`` injected after its ``parameters`` cell. Stops at the first failing notebook
    with ``SystemExit`` naming it, the failing cell and the executed copy that holds the
    traceback. Returns the executed copies, in toc order.

    ``build_dir`` may not be, contain or lie inside ``book/`` (the project root contains it);
    an existing ``build_dir`` must hold the runbook's marker file or be empty. Both are checked
    before any notebook runs.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    if preset not in PRESETS:
        raise SystemExit(f"unknown preset {preset!r}; valid choices: {', '.join(PRESETS)}")
    root = _check_root(root)
    build_dir = Path(build_dir).resolve()
    _refuse_source_overlap(build_dir, "--build-dir", f"_build/{preset}", root)
    _check_writable(build_dir, "--build-dir", f"_build/{preset}")
    parameters = {
        "preset": preset,
        "data_root": data_root,
        "device": device,
        "seed": _int_parameter("seed", seed),
        "output_dir": output_dir,
    }
    selected = _select(notebooks_from_toc(root / TOC_FILE), only)
    for rel in selected:
        if not (root / rel).is_file():
            raise SystemExit(f"{TOC_FILE} lists {rel}, but {root / rel} does not exist")
    _claim(build_dir, "--build-dir", root)
    executed = []
    for rel in selected:
        src, dst = root / rel, build_dir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        print(f"executing {rel} (preset={preset}, device={device}) -> {dst}", flush=True)
        start = time.perf_counter()
        try:
            with _environ(MPLBACKEND=KERNEL_MPLBACKEND, PYTHONUNBUFFERED="1"):
                papermill.execute_notebook(
                    str(src),
                    str(dst),
                    parameters=parameters,
                    kernel_name="python3",
                    cwd=str(root),
                    progress_bar=False,
                    execution_timeout=CELL_TIMEOUT_S,
                )
        except PapermillExecutionError as err:
            first_line = err.source.strip().splitlines()[0] if err.source.strip() else ""
            raise SystemExit(
                f"{rel} failed in cell In [{err.exec_count}] (`{first_line}`, index "
                f"{err.cell_index} of the executed copy): {err.ename}: {err.evalue}\n"
                f"The executed copy with the traceback is at {dst}"
            ) from None
        _show_run_parameters(dst)
        print(f"  {rel}: {time.perf_counter() - start:.1f} s", flush=True)
        executed.append(dst)
    return executed


def _jupyter_book() -> str:
    """The ``jupyter-book`` executable of this environment (next to ``sys.executable``)."""
    exe = Path(sys.executable).with_name("jupyter-book")
    if exe.is_file():
        return str(exe)
    found = shutil.which("jupyter-book")
    if found is None:
        raise SystemExit(
            f"jupyter-book not found next to {sys.executable} nor on PATH: "
            "install the book extra with `pip install -e '.[book]'` (or run `make`)."
        )
    return found


def stage_and_build(
    build_dir: Path, html_out: Path, strict: bool = False, root: Path = REPO_ROOT
) -> Path:
    """Render the executed notebooks in ``build_dir`` to HTML in ``html_out/html``.

    Copies ``_config.yml``, ``_toc.yml`` and the non-notebook files of ``book/`` (Markdown,
    images, bibliography) next to the executed notebooks, then runs ``jupyter-book build``.
    With ``strict`` every Sphinx warning is an error (``-W -n --keep-going``); the HTML is
    still written so the offending page can be inspected. Returns ``html_out/html``;
    raises ``SystemExit`` when a notebook was not executed or the build fails.

    ``build_dir`` must be a folder made by ``execute`` (marker file), and ``html_out/html`` is
    replaced only if the runbook made it (see ``check_html_destination``); both are checked
    before anything is written.
    """
    root = _check_root(root)
    build_dir, html_out = Path(build_dir).resolve(), Path(html_out).resolve()
    _check_writable(build_dir, "--build-dir", "_build/cpu")
    dest = check_html_destination(html_out, build_dir, root)  # also: build_dir is not book/
    _refuse_foreign(build_dir, "--build-dir", root)
    notebooks = notebooks_from_toc(root / TOC_FILE)
    missing = [rel for rel in notebooks if not (build_dir / rel).is_file()]
    if missing:
        raise SystemExit(
            f"{build_dir} lacks the executed copies of {', '.join(map(str, missing))}: "
            f"run `python -m csoa_nb.book.runbook execute --build-dir {build_dir}` first."
        )
    for name in (CONFIG_FILE, TOC_FILE):
        shutil.copy2(root / name, build_dir / name)
    for path in (root / BOOK_DIR).rglob("*"):
        rel = path.relative_to(root)
        if path.is_file() and path.suffix != ".ipynb" and ".ipynb_checkpoints" not in rel.parts:
            (build_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, build_dir / rel)

    # -q: Sphinx prints warnings and errors only. Jupyter Book's own report (stdout) names the
    # HTML folder before it is moved, so it is shown only when the build fails.
    cmd = [_jupyter_book(), "build", str(build_dir), "--path-output", str(build_dir), "--all", "-q"]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    print("$ " + " ".join(cmd), flush=True)
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=build_dir, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        print(result.stdout, flush=True)
    built = build_dir / "_build" / "html"
    if built.is_dir():
        check_html_destination(html_out, build_dir, root)  # again: the build took a while
        if _owned(dest):
            shutil.rmtree(dest)
        elif dest.is_dir():
            dest.rmdir()  # empty (checked): nothing of the user's is lost
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(built), str(dest))
        (dest / MARKER).write_text(MARKER_TEXT, encoding="utf-8")
    print(f"jupyter-book build: {time.perf_counter() - start:.1f} s", flush=True)
    if result.returncode != 0:
        raise SystemExit(
            f"jupyter-book build failed (exit {result.returncode})"
            + (" with warnings treated as errors" if strict else "")
            + f"; see the messages above. Partial HTML, if any: {dest}"
        )
    print(f"HTML: {dest / 'index.html'}", flush=True)
    return dest


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m csoa_nb.book.runbook", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def add_execute_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--preset", default="cpu", choices=PRESETS, help="default: cpu")
        p.add_argument("--only", nargs="+", metavar="NOTEBOOK", help="e.g. 00_introduction")
        p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--data-root", default="data")
        p.add_argument("--output-dir", default="runs")

    p_exec = commands.add_parser("execute", help="run the notebooks with papermill")
    add_execute_args(p_exec)
    p_exec.add_argument("--build-dir", type=Path, help="default: _build/<preset>")

    p_build = commands.add_parser("build", help="render executed notebooks with Jupyter Book")
    p_build.add_argument("--build-dir", type=Path, required=True)
    p_build.add_argument("--html-out", type=Path, default=Path("_build"))
    p_build.add_argument("--strict", action="store_true", help="warnings are errors")

    p_all = commands.add_parser("all", help="execute, then build")
    add_execute_args(p_all)
    p_all.add_argument("--build-dir", type=Path, help="default: _build/<preset>")
    p_all.add_argument("--html-out", type=Path, default=Path("_build"))
    p_all.add_argument("--strict", action="store_true", help="warnings are errors")

    p_strip = commands.add_parser(
        "strip", help="remove outputs and saved widget state from notebooks (before a commit)"
    )
    p_strip.add_argument("notebooks", nargs="+", type=Path, metavar="NOTEBOOK")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "strip":
        try:
            for path in args.notebooks:  # every one readable, before any is changed
                read_notebook(path)
        except ValueError as err:
            raise SystemExit(str(err)) from None
        for path in args.notebooks:
            changed = strip_notebook(path)
            print(f"{path}: {'stripped' if changed else 'no outputs, nothing to do'}", flush=True)
        return
    if args.command == "all" and args.only:
        raise SystemExit("`all` renders the whole book: use `execute --only` for a subset")
    start = time.perf_counter()
    if args.command in ("execute", "all"):
        build_dir = args.build_dir or Path("_build") / args.preset
        if args.command == "all":  # before the notebooks run, not an hour later
            check_html_destination(args.html_out, build_dir)
        execute(
            args.preset,
            build_dir,
            only=args.only,
            device=args.device,
            seed=args.seed,
            data_root=args.data_root,
            output_dir=args.output_dir,
        )
        print(f"executed in {time.perf_counter() - start:.1f} s", flush=True)
    else:
        build_dir = args.build_dir
    if args.command in ("build", "all"):
        stage_and_build(build_dir, args.html_out, strict=args.strict)
    print(f"total: {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()

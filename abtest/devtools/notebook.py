"""Run a notebook top to bottom, headless, on this interpreter: `make notebook`.

    python -m abtest.devtools.notebook notebooks/experiment_analysis.ipynb reports/analysis.ipynb

The kernel is this process's Python (the project's venv), whatever Jupyter kernelspecs the
machine has, so the notebook sees the installed `abtest` and `analysis` packages. The executed
copy, with its outputs, is written to the second path (open it in any notebook viewer); the
committed notebook stays without outputs.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

KERNEL = "abtest-venv"


def kernel_manager(kernels_dir: Path):
    """A Jupyter kernel manager whose only kernel runs this interpreter."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec = kernels_dir / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "abtest (this interpreter)",
                "language": "python",
            }
        )
    )
    specs = KernelSpecManager(kernel_dirs=[str(kernels_dir)], ensure_native_kernel=False)
    return KernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)


def execute(notebook: Path, working_dir: Path, timeout: int = 600):
    """The notebook executed in `working_dir`; raises ``CellExecutionError`` on the first
    failing cell."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    with tempfile.TemporaryDirectory(prefix="abtest-kernel-") as kernels:
        km = kernel_manager(Path(kernels))
        client = NotebookClient(
            nb, km=km, timeout=timeout, resources={"metadata": {"path": str(working_dir)}}
        )
        try:
            client.execute()
        finally:
            # nbclient leaves a kernel it did not create running; an orphaned kernel exits
            # with os._exit, skipping the exit handlers that stop an embedded Redis it started
            if km.has_kernel:
                km.shutdown_kernel(now=False)
    return nb


def main(argv: list[str] | None = None) -> int:
    import nbformat

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m abtest.devtools.notebook NOTEBOOK OUTPUT", file=sys.stderr)
        return 2
    source, target = Path(args[0]), Path(args[1])
    if not source.is_file():
        print(f"error: {source}: no such notebook", file=sys.stderr)
        return 1
    nb = execute(source, Path.cwd())
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
    print(f"executed {source} -> {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

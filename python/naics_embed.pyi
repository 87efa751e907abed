"""Hierarchy-aware embeddings of classification codes, and coding free text into them.

Type stubs of the native module (python/src/lib.rs); docs/python.md shows it at work.
"""

from os import PathLike
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import numpy as np
import numpy.typing as npt
import pyarrow as pa

__version__: str

Texts = Union[Iterable[Optional[str]], "pa.Array", "pa.ChunkedArray", Any]
Points = Union[npt.ArrayLike, np.ndarray]

class Coder:
    """A trained model and its coder, loaded once; threads may share one."""

    @staticmethod
    def load(
        path: Optional[Union[str, PathLike[str]]] = None,
        experiment: Optional[str] = None,
    ) -> "Coder":
        """The weights file `path`, else the best checkpoint of `experiment`, else that of
        the last curriculum stage in conf/ (relative to the working directory, as
        `naics-trainer search`). FileNotFoundError where there is none."""
        ...
    def search(
        self,
        text: str,
        k: int = 10,
        min_confidence: float = 0.5,
        abstain: float = 0.0,
    ) -> dict[str, Any]:
        """`naics-trainer search --json` as a dict: `ranked` (code, title, distance,
        confidence, path), `level` (the level-wise answer or None), `abstained`."""
        ...
    def classify(
        self,
        texts: Texts,
        k: int = 5,
        min_confidence: float = 0.5,
        abstain: float = 0.0,
        truncate: bool = False,
    ) -> pa.Table:
        """One row per text with `naics-trainer classify`'s answer columns: code_1..k,
        title_1..k, distance_1..k, confidence_1..k, answer_code, answer_title, answer_level,
        answer_confidence, abstained, error. Bad rows get `error`, never an exception."""
        ...
    def embed(self, texts: Iterable[str]) -> npt.NDArray[np.float32]:
        """The texts' points on the hyperboloid, shape (n, dim + 1)."""
        ...
    def codes(self) -> pa.Table:
        """The code table: code, parent, level, title, description, leaf."""
        ...
    def distance(self, a: Points, b: Points) -> Union[float, npt.NDArray[np.float32]]:
        """Lorentz distance between points (one and one: a float; else one per row)."""
        ...
    @property
    def checkpoint(self) -> Path: ...
    @property
    def experiment(self) -> str: ...
    @property
    def dim(self) -> int: ...
    @property
    def curvature(self) -> float: ...

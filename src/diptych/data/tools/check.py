"""Checking a paired dataset before a long run: unreadable files, partners, sizes, formats, duplicates, alignment."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from skimage.filters import gaussian, sobel
from skimage.transform import resize

from ...atomic import write_text_atomic
from ...errors import DataError
from ..checks import run_all
from ..io import decode_image, dtype_range
from ..paired import Pair, find_pairs

PHASES = ("train", "val", "test")
ALIGN_SIZE = 64  # structure is compared at this size: enough for gross misalignment, robust to texture and noise
ROBUST_Z = 4.0  # how many robust standard deviations below the dataset's median score counts as misaligned
MIN_SIGMA = 0.05  # floor of that robust deviation: very consistent datasets would otherwise flag ordinary pairs
FLAT = 0.15  # a side whose structure is weaker than this fraction of the dataset's median is too flat to judge
# A side whose structure sits in fewer than this fraction of the map (one line, a few specks: a Canny map of sky) is
# too sparse to judge: after the smoothing, its correlation rests on a handful of independent values.
MIN_SPREAD = 0.03
BORDER = 2  # map pixels left out at each edge: the filters see padding there, and photos often have a dark frame
MIN_PAIRS_FOR_STATS = 8
SHOWN = 5


@dataclass(frozen=True)
class Problem:
    """One finding: its kind, a one-line message and the files it concerns."""

    kind: str
    message: str
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class PairFacts:
    """What reading one pair found out."""

    name: str
    phase: str
    a_file: str
    b_file: str
    a_format: str  # e.g. "3 x uint8"
    b_format: str
    digest: str
    score: float  # correlation of A's and B's gradient magnitudes (nan when one side is flat)
    a_strength: float  # standard deviation of A's gradient magnitude map (how much structure there is to compare)
    b_strength: float
    a_spread: float  # the fraction of A's map that carries its structure (see `spread`)
    b_spread: float
    problems: tuple[Problem, ...] = ()
    exif_oriented: tuple[str, ...] = ()  # files read turned or mirrored by their EXIF orientation


@dataclass
class CheckReport:
    """Everything `diptych data check` found."""

    root: str
    layout: str = ""
    pairs: dict[str, int] = field(default_factory=dict)
    formats: dict[str, int] = field(default_factory=dict)
    alignment: dict[str, float | int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    exif_oriented: list[str] = field(default_factory=list)  # files read turned or mirrored by their EXIF orientation

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong."""
        return not self.problems

    def counts(self) -> dict[str, int]:
        """Problems per kind."""
        return dict(Counter(p.kind for p in self.problems))

    formats_of = "A + B"  # what a format in `formats` describes

    def headline(self) -> str:
        """The first line: the folder, its layout and how many pairs each split holds."""
        return f"{self.root}: {self.layout} layout, {counted(self.pairs, 'pair(s)')}"

    def lines(self) -> list[str]:
        """The report as text lines for the terminal."""
        out = [self.headline()]
        if self.formats:
            out.append(f"formats ({self.formats_of}): " + ", ".join(f"{f}: {n}" for f, n in self.formats.items()))
        if self.alignment and "median" not in self.alignment:
            out.append(f"alignment: all {self.alignment['too_flat']} pair(s) too flat to judge")
        elif self.alignment:
            a = self.alignment
            out.append(
                f"alignment score (gradient correlation): median {a['median']:.3f}, min {a['min']:.3f}, "
                f"flagged below {a['threshold']:.3f}; {a['too_flat']} pair(s) too flat to judge"
            )
        if self.exif_oriented:
            shown = ", ".join(self.exif_oriented[:SHOWN])
            more = f" and {len(self.exif_oriented) - SHOWN} more" if len(self.exif_oriented) > SHOWN else ""
            out.append(f"EXIF orientation applied (read as viewers show them): {shown}{more}")
        if self.ok:
            out.append("no problems found")
            return out
        counts = self.counts()
        out.append(f"{len(self.problems)} problem(s): " + ", ".join(f"{k}: {n}" for k, n in counts.items()))
        for kind in counts:
            found = [p for p in self.problems if p.kind == kind]
            out += [f"  [{kind}] {p.message}" for p in found[:SHOWN]]
            if len(found) > SHOWN:
                out.append(f"  [{kind}] ... and {len(found) - SHOWN} more (see --json)")
        return out

    def to_json(self) -> str:
        """The full report as JSON (every problem, not only the first few)."""
        data = asdict(self)
        data["ok"] = self.ok
        data["counts"] = self.counts()
        return json.dumps(data, indent=2, allow_nan=False, default=str) + "\n"


def counted(per_phase: dict[str, int], what: str) -> str:
    """E.g. '30 pair(s) (train: 18, val: 6, test: 6)'."""
    splits = ", ".join(f"{phase or 'all'}: {n}" for phase, n in per_phase.items())
    return f"{sum(per_phase.values())} {what} ({splits})"


def pixel_digest(*arrays: np.ndarray) -> str:
    """A SHA-256 of the arrays' shapes, sample types and samples: equal for identical pixels in any file format."""
    digest = hashlib.sha256()
    for arr in arrays:
        digest.update(f"{arr.shape}{arr.dtype}".encode())
        digest.update(np.ascontiguousarray(arr).tobytes())
    return digest.hexdigest()


def structure_map(x: np.ndarray) -> np.ndarray:
    """An image's smoothed gradient magnitude at ALIGN_SIZE x ALIGN_SIZE, without its BORDER, flattened."""
    grey = x.astype(np.float64).mean(axis=2) / dtype_range(x.dtype)[1]
    small = resize(grey, (ALIGN_SIZE, ALIGN_SIZE), anti_aliasing=True)
    return gaussian(sobel(small), sigma=1.0)[BORDER:-BORDER, BORDER:-BORDER].ravel()


def spread(structure: np.ndarray) -> float:
    """The fraction of a structure map that carries its variance (participation ratio: 1 = even, 1/N = one value)."""
    energy = (structure - structure.mean()) ** 2
    total = float(energy.sum())
    return total**2 / (energy.size * float((energy**2).sum())) if total > 0 else 0.0


def alignment_score(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float, float]:
    """Pearson correlation of A's and B's structure maps (nan if one is flat), each map's standard deviation and
    each map's spread."""
    sa, sb = structure_map(a), structure_map(b)
    measures = (float(sa.std()), float(sb.std()), spread(sa), spread(sb))
    if sa.std() < 1e-12 or sb.std() < 1e-12:
        return float("nan"), *measures
    return float(np.corrcoef(sa, sb)[0, 1]), *measures


def judgeable(measures: tuple[float, float, float, float], median_a: float, median_b: float) -> bool:
    """Whether a pair's alignment can be judged from its structure measures (A's and B's strength and spread, as
    alignment_score gives them) against the dataset's median strengths: not too flat, not too sparse."""
    a_strength, b_strength, a_spread, b_spread = measures
    return a_strength >= FLAT * median_a and b_strength >= FLAT * median_b and min(a_spread, b_spread) >= MIN_SPREAD


def sample_format(arr: np.ndarray) -> str:
    """E.g. "3 x uint8": channels and sample type."""
    return f"{arr.shape[2]} x {arr.dtype}"


def inspect_pair(pair: Pair, layout: str, phase: str) -> PairFacts:
    """Read one pair as training reads it and measure it; unreadable files raise DataError."""
    decoded = [decode_image(pair.a_path, volume_slice=pair.volume_slice)]
    a = decoded[0].array
    problems: list[Problem] = []
    if layout == "aligned":
        width = a.shape[1]
        if width % 2:
            problems.append(
                Problem(
                    "odd_width",
                    f"{pair.a_path}: width {width} is odd; an A|B image is two equal halves",
                    (str(pair.a_path),),
                )
            )
        a, b = a[:, : width // 2], a[:, width // 2 : 2 * (width // 2)]
    else:
        decoded.append(decode_image(pair.b_path, volume_slice=pair.volume_slice))
        b = decoded[1].array
        if a.shape[:2] != b.shape[:2]:
            problems.append(
                Problem(
                    "size_mismatch",
                    f"{pair.b_path}: {b.shape[1]}x{b.shape[0]} but its partner {pair.a_path} is {a.shape[1]}x{a.shape[0]}",
                    (str(pair.a_path), str(pair.b_path)),
                )
            )
    return PairFacts(
        pair.name,
        phase,
        pair.where(pair.a_path),
        pair.where(pair.b_path),
        sample_format(a),
        sample_format(b),
        pixel_digest(a, b),
        *((float("nan"),) * 5 if problems else alignment_score(a, b)),  # a stretched partner would also score low
        tuple(problems),
        tuple(str(path) for path, d in zip((pair.a_path, pair.b_path), decoded, strict=False) if d.orientation != 1),
    )


def dataset_phases(root: Path) -> list[str]:
    """The split sub-folders to check (train/, val/, test/ or A/train ...), or [""] for a dataset without splits."""
    found = [p for p in PHASES if (root / p).is_dir() or (root / "A" / p).is_dir()]
    return found or [""]


def check_dataset(
    root: Path,
    layout: str = "auto",
    min_correlation: float = 0.1,
    robust_z: float = ROBUST_Z,
    workers: int = 4,
    nifti_axis: int = 2,
) -> CheckReport:
    """Read every pair of every split once (in threads) and report all problems found; raises only if no pairs.

    NIfTI volumes are checked slice by slice along `nifti_axis`, as training reads them."""
    report = CheckReport(str(root))
    facts: list[PairFacts] = []
    for phase in dataset_phases(root):
        unmatched: list[str] = []
        try:
            found_layout, _, pairs = find_pairs(root, layout, phase or "train", unmatched, nifti_axis)
        except DataError as exc:
            report.problems.append(Problem("layout", str(exc)))
            continue
        report.layout = found_layout
        report.problems += [Problem("missing_partner", m, (m.split(": ", 1)[0],)) for m in unmatched]
        results = run_all(pairs, lambda p, lay=found_layout, ph=phase: inspect_pair(p, lay, ph), workers)
        for pair, res in zip(pairs, results, strict=True):
            if isinstance(res, DataError):
                report.problems.append(Problem("unreadable", str(res), (str(pair.a_path), str(pair.b_path))))
            else:
                facts.append(res)
                report.problems += res.problems
                report.exif_oriented += res.exif_oriented
        report.pairs[phase] = len(pairs)
    if not report.pairs and report.problems:
        raise DataError(report.problems[0].message)
    report.problems += duplicates([(f.digest, f.phase, f.a_file) for f in facts], "pairs")
    report.problems += _mixed_formats(facts, report)
    report.problems += _misaligned(facts, report, min_correlation, robust_z)
    return report


def duplicates(entries: list[tuple[str, str, str]], what: str) -> list[Problem]:
    """Items (digest, phase, file) with identical pixels, e.g. what="pairs"; across splits they leak test data into
    training."""
    groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for digest, phase, file in entries:
        groups[digest].append((phase, file))
    problems = []
    for same in groups.values():
        if len(same) > 1:
            phases = sorted({phase for phase, _ in same})
            where = f" across splits {', '.join(phases)} (test data leaks into training)" if len(phases) > 1 else ""
            names = ", ".join(file for _, file in same[:SHOWN])
            problems.append(
                Problem("duplicate", f"{len(same)} identical {what}{where}: {names}", tuple(f for _, f in same))
            )
    return problems


def _mixed_formats(facts: list[PairFacts], report: CheckReport) -> list[Problem]:
    """Pairs whose channels or sample type differ from the dataset's most common format."""
    formats = Counter(f"{f.a_format} + {f.b_format}" for f in facts)
    report.formats = dict(formats.most_common())
    if len(formats) < 2:
        return []
    usual = formats.most_common(1)[0][0]
    usual_a, usual_b = usual.split(" + ")
    problems = []
    for f in facts:
        fmt = f"{f.a_format} + {f.b_format}"
        if fmt == usual:
            continue
        # name the file whose format differs (both when both do)
        odd = [
            path
            for path, side, common in ((f.a_file, f.a_format, usual_a), (f.b_file, f.b_format, usual_b))
            if side != common
        ]
        problems.append(
            Problem("mixed_format", f"{', '.join(odd)}: {fmt} but most pairs are {usual}; convert it", tuple(odd))
        )
    return problems


def _misaligned(facts: list[PairFacts], report: CheckReport, min_correlation: float, robust_z: float) -> list[Problem]:
    """Pairs whose A and B structure correlate far less than the dataset's usual pair, or below min_correlation."""
    scored = [f for f in facts if np.isfinite(f.score)]
    if not scored:
        return []
    # Near-flat crops (dark sky, blank tiles) correlate mostly noise and compression artefacts, and sparse ones (an
    # edge map holding one short line) a handful of values: not judged.
    med_a = float(np.median([f.a_strength for f in scored]))
    med_b = float(np.median([f.b_strength for f in scored]))
    judged = [f for f in scored if judgeable((f.a_strength, f.b_strength, f.a_spread, f.b_spread), med_a, med_b)]
    if not judged:
        report.alignment = {"too_flat": len(facts)}
        return []
    valid = np.array([f.score for f in judged])
    median = float(np.median(valid))
    threshold = min_correlation
    if len(valid) >= MIN_PAIRS_FOR_STATS:
        mad = float(np.median(np.abs(valid - median))) * 1.4826  # a standard deviation, robust to the outliers sought
        threshold = max(threshold, median - robust_z * max(mad, MIN_SIGMA))
    report.alignment = {
        "median": median,
        "min": float(valid.min()),
        "threshold": threshold,
        "judged": len(judged),
        "too_flat": len(facts) - len(judged),
    }
    return [
        Problem(
            "misaligned",
            f"{f.a_file}: A and B structure correlate {f.score:.3f} (dataset median {median:.3f}): wrong partner, shifted, or one side lacks the other's structure",
            (f.a_file, f.b_file),
        )
        for f in judged
        if f.score < threshold
    ]


def write_report_json(report: CheckReport, path: Path) -> None:
    """Write the report as JSON, atomically."""
    write_text_atomic(path, report.to_json())

"""Checking an unpaired dataset (trainA/ trainB/ or A/ B/) before a long run, domain by domain: unreadable files
(NaN or infinite samples included), a missing or empty domain, mixed channel counts or sample types, images smaller
than the crop, and duplicates (across splits they leak test data into training)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import DataError
from ..checks import run_all
from ..io import decode_image
from ..paired import Pair
from ..transforms import JointTransform
from ..unpaired import DOMAINS, domain_files, domain_items, is_unpaired_layout, resolve_unpaired_layout
from .check import PHASES, CheckReport, Problem, counted, dataset_phases, duplicates, pixel_digest, sample_format


@dataclass(frozen=True)
class ImageFacts:
    """What reading one image of a domain found out."""

    domain: str
    phase: str
    file: str
    format: str  # e.g. "3 x uint8"
    digest: str
    height: int
    width: int
    exif_oriented: bool = False  # read turned or mirrored by its EXIF orientation


@dataclass
class UnpairedCheckReport(CheckReport):
    """Everything `diptych data check --unpaired` found; formats are counted per domain ("A: 3 x uint8")."""

    images: dict[str, dict[str, int]] = field(default_factory=dict)  # domain -> phase -> images
    formats_of = "per domain"

    def headline(self) -> str:
        """The first line: the folder, its layout and how many images each domain holds per split."""
        counts = "; ".join(f"{side}: {counted(phases, 'image(s)')}" for side, phases in self.images.items())
        return f"{self.root}: unpaired {self.layout} layout, {counts}"


def inspect_image(item: Pair, domain: str, phase: str) -> ImageFacts:
    """Read one image as training reads it; unreadable files (and non-finite samples) raise DataError."""
    decoded = decode_image(item.a_path, volume_slice=item.volume_slice)
    arr = decoded.array
    return ImageFacts(
        domain,
        phase,
        item.where(),
        sample_format(arr),
        pixel_digest(arr),
        arr.shape[0],
        arr.shape[1],
        decoded.orientation != 1,
    )


def _unpaired_phases(root: Path, layout: str) -> list[str]:
    """The splits to check: those with trainA/-style folders, else as for paired data (train/, A/train ...)."""
    found = [p for p in PHASES if is_unpaired_layout(root, p)] if layout != "folders" else []
    return found or dataset_phases(root)


def check_unpaired_dataset(
    root: Path, layout: str = "auto", crop_size: int = 0, workers: int = 4, nifti_axis: int = 2
) -> UnpairedCheckReport:
    """Read every image of both domains in every split once (in threads) and report all problems found; raises only
    if no image is found at all. crop_size > 0 flags images smaller than the crop (as `--preprocess crop` refuses)."""
    report = UnpairedCheckReport(str(root))
    facts: list[ImageFacts] = []
    for phase in _unpaired_phases(root, layout):
        try:
            found_layout, *folders = resolve_unpaired_layout(root, layout, phase or "train")
        except DataError as exc:
            report.problems.append(Problem("layout", str(exc)))
            continue
        report.layout = found_layout
        for side, folder in zip(DOMAINS, folders, strict=True):
            facts += _check_folder(report, side, phase, folder, workers, nifti_axis)
    if not any(n for phases in report.images.values() for n in phases.values()) and report.problems:
        raise DataError(report.problems[0].message)
    for side in DOMAINS:
        mine = [f for f in facts if f.domain == side]
        report.problems += duplicates([(f.digest, f.phase, f.file) for f in mine], f"images in domain {side}")
        report.problems += _mixed_formats(mine, side, report)
    if crop_size:
        report.problems += _too_small(facts, crop_size)
    return report


def _check_folder(
    report: UnpairedCheckReport, side: str, phase: str, folder: Path, workers: int, nifti_axis: int
) -> list[ImageFacts]:
    """Read one domain's images of one split, adding what is wrong to the report; return the readable ones' facts."""
    bad: list[str] = []
    try:
        items = domain_items(folder, domain_files(folder, side), nifti_axis, bad)
    except DataError as exc:
        report.problems.append(Problem("empty_domain", str(exc), (str(folder),)))
        report.images.setdefault(side, {})[phase] = 0
        return []
    report.problems += [Problem("unreadable", msg, (msg.split(": ", 1)[0],)) for msg in bad]
    facts = []
    for item, res in zip(items, run_all(items, lambda it: inspect_image(it, side, phase), workers), strict=True):
        if isinstance(res, DataError):
            report.problems.append(Problem("unreadable", str(res), (str(item.a_path),)))
            continue
        facts.append(res)
        if res.exif_oriented:
            report.exif_oriented.append(res.file)
    report.images.setdefault(side, {})[phase] = len(items)
    return facts


def _mixed_formats(facts: list[ImageFacts], side: str, report: UnpairedCheckReport) -> list[Problem]:
    """Images of a domain whose channels or sample type differ from the domain's most common format."""
    formats = Counter(f.format for f in facts)
    report.formats.update({f"{side}: {fmt}": n for fmt, n in formats.most_common()})
    if len(formats) < 2:
        return []
    usual = formats.most_common(1)[0][0]
    return [
        Problem(
            "mixed_format", f"{f.file}: {f.format} but most images of domain {side} are {usual}; convert it", (f.file,)
        )
        for f in facts
        if f.format != usual
    ]


def _too_small(facts: list[ImageFacts], crop_size: int) -> list[Problem]:
    """Images smaller than the crop, found by the check training makes with `--preprocess crop`."""
    transform = JointTransform("crop", crop_size=crop_size, flip=False)
    problems = []
    for f in facts:
        try:
            transform.check(f.height, f.width, f.file)
        except DataError as exc:
            problems.append(Problem("too_small", str(exc), (f.file,)))
    return problems

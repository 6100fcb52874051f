"""Reading the GPU check's results: pytest's JUnit XML, the throughput summary against the
official anchor, and the Markdown table for benchmarks/results/gpu_check.md (used by
``gpu_check.py``)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

PRESETS = ("fastgan_lite_256", "fastgan_256")
# The anchor: the official code as released, fp32, TF32 off, one H100, 256 px, batch 64.
OFFICIAL = {
    "fastgan_lite_256": {"img_per_s": 118.0, "peak_mem_gb": 25.7, "target_img_per_s": 590.0},
    "fastgan_256": {"img_per_s": 79.0, "peak_mem_gb": 37.5, "target_img_per_s": 395.0},
}


def parse_junit(path: Path) -> dict[str, Any]:
    """Counts and each test's outcome (with the failure's first lines) from pytest's JUnit XML."""
    root = ET.parse(path).getroot()
    cases = []
    for case in root.iter("testcase"):
        outcome, message = "passed", None
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = "failed" if tag == "failure" else tag
                message = (node.get("message") or "") + "\n" + (node.text or "")
                message = message.strip()[:1500]
                break
        cases.append(
            {"test": case.get("name"), "outcome": outcome, "time_s": float(case.get("time") or 0)}
            | ({"message": message} if message else {})
        )
    counts: dict[str, int] = {}
    for c in cases:
        counts[c["outcome"]] = counts.get(c["outcome"], 0) + 1
    return {"counts": counts, "tests": cases}


def parse_verbose(text: str) -> dict[str, Any]:
    """Outcomes from ``pytest -v`` lines (``path::test PASSED [ 8%]``), for a killed run."""
    outcomes = {"PASSED": "passed", "FAILED": "failed", "SKIPPED": "skipped", "ERROR": "error"}
    cases = []
    for m in re.finditer(r"^\S+::(\S+) (PASSED|FAILED|SKIPPED|ERROR)", text, re.M):
        cases.append({"test": m.group(1), "outcome": outcomes[m.group(2)]})
    counts: dict[str, int] = {}
    for c in cases:
        counts[c["outcome"]] = counts.get(c["outcome"], 0) + 1
    return {"counts": counts, "tests": cases, "from": "pytest -v lines (no JUnit XML)"}


def summarise(rows: list[dict[str, Any]], gpu: bool = True) -> dict[str, Any]:
    """Per preset: each configuration against our baseline and (on a GPU) the official anchor."""
    summary: dict[str, Any] = {}
    for preset in PRESETS:
        done = {r["config"]: r for r in rows if r["preset"] == preset and "img_per_s" in r}
        if not done:
            continue
        base = done.get("baseline")
        official = OFFICIAL[preset]
        entry: dict[str, Any] = {"official_anchor": official} if gpu else {}
        for config, r in done.items():
            entry[config] = {
                "img_per_s": round(r["img_per_s"], 2),
                "x_our_baseline": round(r["img_per_s"] / base["img_per_s"], 3) if base else None,
            }
            if gpu:  # the anchor is an H100's: a CPU run has nothing to compare with it
                entry[config]["x_official"] = round(r["img_per_s"] / official["img_per_s"], 3)
                # The official peak is taken as GiB (max_memory_allocated / 2**30).
                mem = r["peak_mem_gib"] / official["peak_mem_gb"]
                entry[config]["mem_vs_official"] = round(mem, 3)
        best = max(done.values(), key=lambda r: r["img_per_s"])
        entry["best"] = best["config"]
        if gpu:
            entry["meets_target"] = best["img_per_s"] >= official["target_img_per_s"]
        summary[preset] = entry
    return summary


def markdown_table(rows: list[dict[str, Any]], machine: str) -> str:
    head = (
        "| preset | config | img/s | s/kimg | peak GiB | startup s | compile warm-up s | "
        "TFLOP/s | status |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    )
    lines = [f"Machine: {machine}", "", head]

    def cell(r: dict[str, Any], key: str, fmt: str = "{:.1f}") -> str:
        v = r.get(key)
        return fmt.format(v) if isinstance(v, (int, float)) else ""

    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['config']} | {cell(r, 'img_per_s')} | "
            f"{cell(r, 's_per_kimg', '{:.2f}')} | {cell(r, 'peak_mem_gib', '{:.2f}')} | "
            f"{cell(r, 'startup_s')} | {cell(r, 'compile_warmup_s')} | "
            f"{cell(r, 'tflops', '{:.3g}')} | {r['status']} |"
        )
    return "\n".join(lines)

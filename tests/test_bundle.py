"""Deployment bundles (deploy.bundle, pipeline.deployment): deploy → verify reproduces the golden vectors on
lava-fixed in a fresh process, a tampered golden vector is reported at its sample, layer and step, the manifest's
sha256s match the files and a corrupted file fails naming it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lavaflow.deploy.bundle import (
    GOLDEN,
    MANIFEST,
    NETX,
    RESOURCES,
    SPEC,
    first_mismatch,
    read_bundle,
    write_bundle,
)
from lavaflow.deploy.resources import DoesNotFitError
from lavaflow.models.errors import BackendError, DataError, NetSpecError
from lavaflow.models.netspec import INPUT, Connection, CubaNeurons, Dense, Input, NetSpec, Readout
from lavaflow.pipeline.deployment import deploy_run, verify_bundle
from lavaflow.pipeline.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300  # only to catch a hang


def network(delay: int = 1) -> NetSpec:
    """input (6, rate) → hidden (5) → out (3), CUBA, weights large enough that both layers spike."""
    rng = np.random.default_rng(3)
    populations = {
        "hidden": CubaNeurons(bias=np.zeros(5), threshold=0.5, current_decay=0.5, voltage_decay=0.2),
        "out": CubaNeurons(bias=np.zeros(3), threshold=0.5, current_decay=0.5, voltage_decay=0.2),
    }
    connections = (
        Connection(INPUT, "hidden", Dense(rng.uniform(-0.2, 1.0, size=(5, 6))), 0),
        Connection("hidden", "out", Dense(rng.uniform(-0.2, 1.0, size=(3, 5))), delay),
    )
    return NetSpec(Input((6,), "rate"), populations, connections, Readout("out", np.eye(3), np.zeros(3)), 8,
                   {"method": "test"})


def make_run(path: Path, spec: NetSpec) -> RunDir:
    run_dir = RunDir.create(path)
    run_dir.save_netspec(spec)
    return run_dir


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = make_run(tmp_path_factory.mktemp("run") / "run", network())
    return deploy_run(run_dir, samples=6).bundle


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_manifest_hashes_every_file_and_records_versions_scales_and_steps(bundle: Path) -> None:
    manifest = json.loads((bundle / MANIFEST).read_text())
    on_disk = {path.name for path in bundle.iterdir()} - {MANIFEST}
    assert on_disk == {SPEC, GOLDEN, RESOURCES, NETX} == set(manifest["files"])
    for name, digest in manifest["files"].items():
        assert sha256(bundle / name) == digest
    assert {"lavaflow", "lava-nc", "lava-dl", "python"} <= set(manifest["versions"])
    assert manifest["versions"]["lava-nc"] == "0.10.0"
    loaded = read_bundle(bundle)
    spec = loaded.spec
    assert manifest["time_steps"] == spec.time_steps == 8
    assert manifest["quantisation"]["scales"] == {name: p.scale for name, p in spec.populations.items()}
    assert manifest["quantisation"]["input_scale"] == spec.input_scale
    assert manifest["quantisation"]["report"]["tensors"]  # the quantiser's report, tensor by tensor
    assert manifest["netx"] == {"file": NETX, "reason": None, "window_steps": 10,
                                "golden": f"{GOLDEN}:netx_counts (see deploy.bundle.netx_window)"}
    assert manifest["golden"]["samples"] == 6 and manifest["golden"]["records"] == ["hidden.spikes", "out.spikes"]
    assert "synthetic" in manifest["golden_inputs"]  # the run names no data set
    resources = json.loads((bundle / RESOURCES).read_text())
    assert resources["resources"]["cores"] == manifest["resources"]["cores"] == 2
    assert resources["energy"]["joules"] == manifest["energy"]["joules_per_sample"] > 0
    golden = loaded.golden
    assert golden.records["hidden.spikes"].sum() > 0 and golden.counts.sum() > 0  # a test that can fail
    assert np.array_equal(golden.counts, golden.records["out.spikes"].sum(axis=0))
    metrics = RunDir(bundle.parent).read_metrics()
    assert metrics["loihi2_cores"] == 2 and metrics["loihi2_chips"] == 1
    assert metrics["loihi_energy_per_sample_joules"] == manifest["energy"]["joules_per_sample"]


def test_verify_in_a_fresh_process_reproduces_the_golden_vectors_on_lava_fixed(bundle: Path) -> None:
    command = [sys.executable, "-m", "lavaflow.pipeline.deployment", "verify", str(bundle), "--backend",
               "lava-fixed", "--netx"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "6 samples on lava-fixed reproduce the golden vectors exactly" in done.stdout
    assert "the netx file reproduces the output counts" in done.stdout


def test_a_tampered_golden_vector_is_reported_at_its_sample_layer_and_step(bundle: Path, tmp_path: Path) -> None:
    original = read_bundle(bundle)
    golden = original.golden
    records = {name: values.copy() for name, values in golden.records.items()}
    records["hidden.spikes"][4, 2, 1] ^= 1  # step 5 of sample 2, neuron 1
    tampered = dataclasses.replace(golden, records=records)
    manifest = {key: original.manifest[key] for key in ("target", "time_steps")}
    path = write_bundle(tmp_path / "tampered", original.spec, tampered, manifest=manifest, resources={})
    result = verify_bundle(path, "lava-fixed", timeout_s=TIMEOUT_S)
    mismatch = result.mismatch
    assert not result.ok
    assert (mismatch.sample, mismatch.layer, mismatch.step, mismatch.variable) == (2, "hidden", 5, "spikes")
    assert mismatch.neurons == (1,)
    assert mismatch.expected == (int(records["hidden.spikes"][4, 2, 1]),)
    assert mismatch.got == (int(golden.records["hidden.spikes"][4, 2, 1]),)
    assert "sample 2, layer 'hidden', step 5" in str(result)


def test_first_mismatch_takes_the_first_sample_then_the_earliest_step_then_the_earlier_layer(bundle: Path) -> None:
    golden = read_bundle(bundle).golden
    order = ["hidden", "out"]
    records = {name: values.copy() for name, values in golden.records.items()}
    assert first_mismatch(golden, golden.counts.copy(), records, order) is None
    records["out.spikes"][6, 3, 0] ^= 1  # sample 3: a later layer at an earlier step ...
    records["hidden.spikes"][7, 3, 2] ^= 1  # ... wins over an earlier layer at a later step
    records["hidden.spikes"][0, 5, 0] ^= 1  # sample 5 comes later
    found = first_mismatch(golden, golden.counts.copy(), records, order)
    assert (found.sample, found.layer, found.step) == (3, "out", 7)
    records["hidden.spikes"][6, 3, 4] ^= 1  # the same step in an earlier layer: that layer ran first
    found = first_mismatch(golden, golden.counts.copy(), records, order)
    assert (found.sample, found.layer, found.step, found.neurons) == (3, "hidden", 7, (4,))
    counts = golden.counts.copy()
    counts[1, 2] += 1  # counts only, no traces: the sample and the output layer, no step
    found = first_mismatch(golden, counts, {}, order)
    assert (found.sample, found.layer, found.step, found.variable) == (1, "out", None, "counts")
    assert found.got == (int(golden.counts[1, 2]) + 1,)


@pytest.mark.parametrize("damage", ["changed", "missing"])
def test_a_corrupted_bundle_file_fails_naming_the_file(bundle: Path, tmp_path: Path, damage: str) -> None:
    copy = shutil.copytree(bundle, tmp_path / "copy")
    if damage == "changed":
        with open(copy / GOLDEN, "ab") as stream:
            stream.write(b"\0")
        match = f"{GOLDEN}: sha256 mismatch"
    else:
        (copy / SPEC).unlink()
        match = f"{SPEC} is missing"
    with pytest.raises(DataError, match=match):
        verify_bundle(copy, "lava-fixed")
    command = [sys.executable, "-m", "lavaflow.pipeline.deployment", "verify", str(copy)]
    if damage == "changed":  # the CLI: a user error, one paragraph naming the file
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=REPO)
        assert done.returncode == 2 and GOLDEN in done.stderr and "sha256 mismatch" in done.stderr


def test_a_network_netx_cannot_express_is_bundled_without_netx_saying_why(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import lavaflow.deploy.netx as netx

    def refuse(spec: object, path: object, **options: object) -> None:
        raise NetSpecError("population 'hidden' has a recurrent edge")

    monkeypatch.setattr(netx, "write_netx", refuse)
    path = deploy_run(make_run(tmp_path / "run", network()), samples=2).bundle
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["netx"]["file"] is None and not (path / NETX).exists()
    assert "not netx-expressible" in manifest["netx"]["reason"] and "recurrent edge" in manifest["netx"]["reason"]
    assert set(manifest["files"]) == {SPEC, GOLDEN, RESOURCES}
    assert read_bundle(path).golden.netx_counts is None
    with pytest.raises(BackendError, match="no netx file"):
        verify_bundle(path, "lava-fixed", netx=True)


def test_deploy_refuses_a_network_that_does_not_fit_naming_layer_and_fix(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run", network(delay=70))
    with pytest.raises(DoesNotFitError, match=r"layer 'out'.*delay of 70 steps.*fix:"):
        deploy_run(run_dir, samples=2)
    assert not (tmp_path / "run" / "bundle").exists()


def test_an_existing_bundle_is_replaced_only_when_asked(bundle: Path, tmp_path: Path) -> None:
    from lavaflow.models.errors import LavaflowError

    copy = shutil.copytree(bundle, tmp_path / "copy")
    original = read_bundle(copy)
    with pytest.raises(LavaflowError, match="--overwrite"):
        write_bundle(copy, original.spec, original.golden, manifest={}, resources={})
    write_bundle(copy, original.spec, original.golden, manifest={}, resources={}, overwrite=True)
    read_bundle(copy)


def test_loihi2_without_lava_loihi_says_so(bundle: Path) -> None:
    from lava.utils import loihi

    if loihi.is_installed():
        pytest.skip("lava-loihi is installed here")
    with pytest.raises(BackendError, match="lava-loihi"):
        verify_bundle(bundle, "loihi2")


def test_a_run_holding_loihi_integers_is_deployed_as_it_is(tmp_path: Path) -> None:
    """An imported netx run holds a FixedNetSpec: the bundle carries it unchanged, not re-quantised."""
    from lavaflow.deploy.quantize import quantize

    fixed, _ = quantize(network())
    path = deploy_run(make_run(tmp_path / "run", fixed), samples=3).bundle
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["quantisation"]["report"] is None and "not re-quantised" in manifest["quantisation"]["source"]
    assert sha256(path / SPEC) == sha256(tmp_path / "run" / RunDir.FIXED_NETSPEC)  # the very same file contents


def test_the_deploy_command_prints_the_table_energy_and_next_step(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from lavaflow.pipeline.deployment import main

    make_run(tmp_path / "run", network())
    assert main(["deploy", str(tmp_path / "run"), "--samples", "2", "--out", str(tmp_path / "b")]) == 0
    printed = capsys.readouterr().out
    for text in ("hidden", "2 neurocores on 1 Loihi 2 chip (1 + 1)", "energy per sample (T = 8, mean of 2)",
                 "Davies et al.", f"next: lavaflow verify {tmp_path / 'b'} --backend lava-fixed"):
        assert text in printed
    assert main(["deploy", str(tmp_path / "run"), "--samples", "2", "--out", str(tmp_path / "b")]) == 2
    assert "--overwrite" in capsys.readouterr().err  # an existing bundle is kept unless asked

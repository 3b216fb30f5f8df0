"""The experiments: the pipeline end to end (--quick), determinism, bad
arguments, and the pieces (adding problem, Adam, clipping, gradient flow)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import shutil
from dataclasses import replace

import numpy as np
import pytest

from derive.experiments import CELLS, KERNEL_STATES, default_backend, load_kernel
from derive.experiments.check import stale_results
from derive.experiments.cli import main
from derive.experiments.forget_bias import default_cells, initial_model, learnt_at
from derive.experiments.gates import gated_cells, keep_gate, measure
from derive.experiments.gradient_flow import gradient_ratios, lags_up_to, states_at
from derive.experiments.plots import finish_svg, scope_css
from derive.experiments.results import plot_names
from derive.experiments.optim import Adam, FlatParameters, clip_by_global_norm, global_norm
from derive.experiments.progress import Progress, run_jobs
from derive.experiments.tables import markdown
from derive.experiments import tasks
from derive.experiments.tasks import BASELINE_MSE, adding_problem, baseline_mse
from derive.experiments.train import FULL_TRAINING, QUICK_TRAINING, Model, hidden_size, param_count, train

EXPERIMENTS = ("gradient-flow", "memory", "gates", "forget-bias")
COMMITTED = Path(__file__).resolve().parent.parent / "docs" / "assets" / "generated" / "experiments"


def _run(out: Path, experiment: str, *extra: str) -> None:
    assert main(["experiment", experiment, "--quick", "--out", str(out), *extra]) == 0


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full suite (memory, then gradient-flow on its trained models)
    run once with --quick, in-process, on one process."""
    out = tmp_path_factory.mktemp("quick")
    _run(out, "all", "--jobs", "1")
    return out


# -- the pipeline ------------------------------------------------------------


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_quick_run_writes_json_with_provenance(quick: Path, experiment: str) -> None:
    result = json.loads((quick / f"{experiment}.json").read_text(encoding="utf-8"))
    assert result["command"].startswith(f"derive experiment {experiment} --quick")
    assert result["derive_version"]
    assert result["numpy"] == np.__version__
    bias_cells = default_cells(CELLS)  # the cells with a forget gate on a memory apart from the output
    assert "lstm" in bias_cells
    cells = {"gates": set(gated_cells(CELLS)), "forget-bias": set(bias_cells)}.get(experiment, set(CELLS))
    # the backend that ran, and the hash of each of its kernel files, computed
    # here from their bytes (not by the function the run used)
    assert result["backend"] == default_backend()
    kernels_dir = Path(load_kernel(CELLS[0], result["backend"]).__file__).parent
    hashed = CELLS if experiment != "forget-bias" else bias_cells
    assert result["kernels_sha256"] == {
        cell: hashlib.sha256((kernels_dir / f"{cell}.py").read_bytes()).hexdigest() for cell in hashed
    }
    assert result["seeds"] == [0, 1]
    assert set(result["data"]["cells"]) == cells
    if experiment == "gradient-flow":
        assert set(result["data"]["summary"]) >= {"init", "trained"}


WORDS = {
    "en": {"gradient-flow": "seeds", "memory": "seeds", "gates": "marked steps", "forget-bias": "one seed"},
    "fr": {"gradient-flow": "graines", "memory": "graines", "gates": "pas marqués", "forget-bias": "une graine"},
}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("lang", ["en", "fr"])
@pytest.mark.parametrize("scheme", ["", ".dark"])
def test_quick_run_writes_valid_svg_per_language_and_scheme(quick: Path, experiment: str, lang: str, scheme: str) -> None:
    path = quick / f"{experiment}.{lang}{scheme}.svg"
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = " ".join(t for t in root.itertext())
    assert WORDS[lang][experiment] in texts  # the legend is in the page's language
    assert "Date" not in path.read_text(encoding="utf-8")
    assert root.get("role") == "img" and root.get("aria-label")
    assert root[0].tag == "{http://www.w3.org/2000/svg}title" and root[0].text == root.get("aria-label")
    assert f"derive-plot-{'dark' if scheme else 'light'}" in root.get("class", "").split()


def test_dark_plots_draw_the_same_data_in_lighter_text(quick: Path) -> None:
    light = (quick / "memory.en.svg").read_text(encoding="utf-8")
    dark = (quick / "memory.en.dark.svg").read_text(encoding="utf-8")
    assert "#1f1f1f" in light and "#1f1f1f" not in dark and "#e2e4e9" in dark
    assert "fill: #ffffff" not in light + dark  # transparent: the page's background shows


@pytest.mark.parametrize("path", sorted(COMMITTED.glob("*.svg")), ids=lambda p: p.name)
def test_committed_plots_have_a_title_and_a_scoped_stylesheet(path: Path) -> None:
    svg = path.read_text(encoding="utf-8")
    root = ET.fromstring(svg)
    assert root.get("aria-label") and root.find("{http://www.w3.org/2000/svg}title") is not None
    for style in root.iter("{http://www.w3.org/2000/svg}style"):
        rules = [r for r in (style.text or "").split("}") if r.strip()]
        assert rules and all(r.strip().startswith("svg.derive-plot ") for r in rules), style.text


def test_every_experiment_has_its_committed_results_and_plots() -> None:
    for experiment in EXPERIMENTS:
        assert (COMMITTED / f"{experiment}.json").is_file(), experiment
        for name in plot_names(experiment):
            assert (COMMITTED / name).is_file(), name


def test_scope_css_keeps_rules_inside_the_plot() -> None:
    assert scope_css("*{stroke-linejoin: round; stroke-linecap: butt}", "svg.p") == (
        "svg.p *{stroke-linejoin: round; stroke-linecap: butt}")
    assert scope_css(" a, g > b {x: 1} c{y: 2}", "svg.p") == "svg.p a, svg.p g > b{x: 1}svg.p c{y: 2}"
    with pytest.raises(ValueError, match="css: expected plain rules"):
        scope_css("@media print { * {x: 1} }", "svg.p")


def test_finish_svg_labels_the_plot() -> None:
    svg = '<svg width="1pt" viewBox="0 0 1 1">\n <defs><style type="text/css">*{a: b}</style></defs></svg>'
    done = finish_svg(svg, 'Error "T" < 1 & more', "dark")
    assert done.startswith('<svg width="1pt" viewBox="0 0 1 1" class="derive-plot derive-plot-dark" role="img" '
                           'aria-label="Error &quot;T&quot; &lt; 1 &amp; more">\n <title>Error "T" &lt; 1 &amp; more</title>')
    assert "<style type=\"text/css\">svg.derive-plot *{a: b}</style>" in done


def test_memory_results_hold_a_sensible_table(quick: Path) -> None:
    data = json.loads((quick / "memory.json").read_text(encoding="utf-8"))["data"]
    assert data["lengths"] == [5, 20]
    for cell in CELLS:
        for length in ("5", "20"):
            # 25 steps teach nothing yet: every error is near the baseline's, none far off it
            errors, baseline = data["cells"][cell]["test_mse"][length], data["baseline_mse"][length]
            assert len(errors) == 2 and all(0.5 * baseline < e < 1.5 * baseline for e in errors), (cell, length, errors)
    assert data["summary"]["length"] == 20
    result = json.loads((quick / "memory.json").read_text(encoding="utf-8"))
    en, fr = markdown("memory", result, "en"), markdown("memory", result, "fr")
    assert "| `lstm` |" in en and "| `lstm` |" in fr
    assert "référence triviale" in fr and "\u202f;" in fr  # French spacing before ;
    assert f"{data['cells']['gru']['test_mse_mean']['20']:.3g}".replace(".", ",") in fr


def test_gates_and_forget_bias_tables_in_both_languages(quick: Path) -> None:
    gates = json.loads((quick / "gates.json").read_text(encoding="utf-8"))
    en, fr = markdown("gates", gates, "en"), markdown("gates", gates, "fr")
    assert en.count("\n| `") == fr.count("\n| `") == len(gated_cells(CELLS)) >= 4
    assert "| `rnn` |" not in en  # the gated cells only
    assert "| `gru` | $1 - G_u$ |" in en and "| `gru_torch` | $G_z$ |" in fr and "| `lstm` | $G_f$ |" in en
    lstm = gates["data"]["cells"]["lstm"]
    mean = sum(lstm["keep_mean_unmarked"]) / 2
    assert f"{mean:.2f} [{lstm['keep_mean_unmarked'][0]:.2f}, {lstm['keep_mean_unmarked'][1]:.2f}]" in en
    assert f"{mean:.2f}".replace(".", ",") + " [" in fr and "\u202f; " in fr and "; " not in fr.replace("\u202f; ", "")
    bias = json.loads((quick / "forget-bias.json").read_text(encoding="utf-8"))
    en, fr = markdown("forget-bias", bias, "en"), markdown("forget-bias", bias, "fr")
    n_cells = len(bias["data"]["cells"])  # a table per cell, a row per bias; the tables after the first start a line
    assert en.count("\n| ") == fr.count("\n| ") == len(bias["data"]["biases"]) * n_cells + n_cells - 1
    assert "| 2 | 0/2 |" in en and "biais ajouté à $b_{f}$" in fr and "(—\u202f: jamais)" in fr


def test_the_site_builds_with_quick_results(quick: Path, tmp_path: Path) -> None:
    """The end of the pipeline: plots and tables of a --quick run go into a page."""
    from conftest import site_build_missing
    from test_site_build import _mini_site

    reason = site_build_missing()
    if reason and os.environ.get("CI") == "true":
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)
    page = "# Results\n\n" + "\n\n".join(
        f"{{{{ derive: {kind} {name} }}}}" for name in EXPERIMENTS for kind in ("plot", "table")
    ) + "\n"
    assets = tmp_path / "docs" / "assets" / "generated" / "experiments"
    assets.mkdir(parents=True)
    for path in quick.iterdir():
        shutil.copy(path, assets / path.name)
    proc = _mini_site(tmp_path, {"index.md": page})
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert html.count("<svg") >= 2 and "<table>" in html and "gru_torch" in html
    # each plot in both colour schemes, the light one first, ids kept apart
    for experiment in EXPERIMENTS:
        assert html.count(f'id="{experiment}-') and html.count(f'id="{experiment}-', 0) >= 1
    assert html.count('class="derive-plot derive-plot-light"') == len(EXPERIMENTS)
    assert html.count('class="derive-plot derive-plot-dark"') == len(EXPERIMENTS)
    assert html.index("derive-plot-light") < html.index("derive-plot-dark")
    assert "<style type=\"text/css\">*" not in html


def test_gradient_flow_ratios_start_near_one_and_shrink(quick: Path) -> None:
    data = json.loads((quick / "gradient-flow.json").read_text(encoding="utf-8"))["data"]
    assert data["lags"][0] == 1 and data["lags"][-1] == 20
    for cell in CELLS:
        ratios = data["cells"][cell]["init"]["ratio_geomean"]
        assert 0.05 < ratios[0] < 2
        assert ratios[-1] < ratios[0]
        floored = data["cells"][cell]["trained"]["sequences_floored"]
        assert len(floored) == len(data["lags"]) and all(0 <= n <= 2 * 32 for n in floored)


def test_each_command_alone_on_two_processes_gives_the_same_files(quick: Path, tmp_path: Path) -> None:
    # Run again, each experiment on its own (gradient-flow trains its models
    # itself) and in worker processes finishing in another order: same bytes.
    # The gates experiment trains its models alone the way memory trained
    # them, and forget-bias at bias 0 is memory's LSTM too.
    for experiment in EXPERIMENTS:
        _run(tmp_path, experiment, "--jobs", "2")
        for name in [f"{experiment}.json", *plot_names(experiment)]:
            assert (tmp_path / name).read_bytes() == (quick / name).read_bytes(), name


def test_redrawing_the_plots_from_the_results_gives_the_same_files(quick: Path, tmp_path: Path) -> None:
    for path in quick.glob("*.json"):
        shutil.copy(path, tmp_path / path.name)
    assert main(["experiment", "plots", "--out", str(tmp_path)]) == 0
    for experiment in EXPERIMENTS:
        for name in plot_names(experiment):
            assert (tmp_path / name).read_bytes() == (quick / name).read_bytes(), name


def test_forget_bias_zero_is_the_memory_experiments_lstm(quick: Path) -> None:
    memory = json.loads((quick / "memory.json").read_text(encoding="utf-8"))["data"]
    bias = json.loads((quick / "forget-bias.json").read_text(encoding="utf-8"))["data"]
    length = str(bias["sequence_length"])
    assert bias["cells"]["lstm"]["biases"]["0"]["test_mse"] == memory["cells"]["lstm"]["test_mse"][length]
    assert bias["cells"]["lstm"]["biases"]["2"]["test_mse"] != memory["cells"]["lstm"]["test_mse"][length]
    keeps = [bias["cells"]["lstm"]["biases"][f"{b:g}"]["keep_init"][0] for b in bias["biases"]]
    assert keeps == sorted(keeps) and keeps[0] < 0.7 < keeps[-1]  # a larger bias keeps more at first


def test_forget_bias_at_zero_measures_the_memory_run_instead_of_training_it_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given the memory experiment's run of the same model (what ``all``
    passes on), forget-bias at bias 0 measures it: the same figures as
    training it again, and no training."""
    from derive.experiments import forget_bias as fb
    from derive.experiments.memory import MemoryJob, run_memory_job

    config = replace(QUICK_TRAINING, steps=30)
    # the losses themselves in place of the step they are learnt at (never, in 30 steps)
    monkeypatch.setattr(fb, "learnt_at", lambda losses, bound: (len(losses), sum(losses)))
    expected = fb.run_forget_bias_job(fb.ForgetBiasJob("lstm", 0.0, 0, 8, config))
    memory_run = run_memory_job(MemoryJob("lstm", 8, 0, config, keep_params=True))

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained again")

    monkeypatch.setattr(fb, "train", no_training)
    jobs = fb.forget_bias_jobs(["lstm"], (0.0, 1.0), [0, 1], 8, config, {("lstm", 0): memory_run})
    assert [job.trained is not None for job in jobs] == [True, False, False, False]
    assert fb.run_forget_bias_job(jobs[0]) == expected
    with pytest.raises(ValueError, match="model is the one at bias 0, not at 1"):
        fb.run_forget_bias_job(replace(jobs[2], trained=memory_run))


def test_gates_of_the_shown_sequence_are_its_marked_steps(quick: Path) -> None:
    data = json.loads((quick / "gates.json").read_text(encoding="utf-8"))["data"]
    xs, targets = tasks.test_set(20, 100)
    shown = data["shown_sequence"]
    assert shown["marked_steps"] == [int(t) + 1 for t in np.flatnonzero(xs[:, 0, 1])]
    assert shown["target"] == pytest.approx(targets[0], rel=1e-3)
    for cell, entry in data["cells"].items():
        assert np.array(entry["shown_gate"]).shape == (entry["n_h"], 20), cell
        assert all(0 <= k <= 1 for k in entry["keep_mean"])


def test_stale_results_notices_a_changed_kernel_and_a_missing_plot(quick: Path, tmp_path: Path) -> None:
    for name in quick.iterdir():
        (tmp_path / name.name).write_bytes(name.read_bytes())
    assert stale_results(tmp_path) == []
    path = tmp_path / "memory.json"
    result = json.loads(path.read_text(encoding="utf-8"))
    result["kernels_sha256"]["gru"] = "0" * 64
    path.write_text(json.dumps(result), encoding="utf-8")
    (tmp_path / "gradient-flow.fr.svg").unlink()
    (tmp_path / "gates.en.dark.svg").unlink()
    changed, *missing = sorted(stale_results(tmp_path), key=lambda line: "svg" in line)
    assert "memory.json" in changed and "current ones for gru;" in changed
    assert "derive experiment memory --quick" in changed
    assert sorted(missing)[0].endswith("gates.en.dark.svg: missing; rerun `derive experiment gates --quick "
                                       f"--seeds 2 --cells {','.join(CELLS)} --length 20`")
    assert "gradient-flow.fr.svg: missing" in sorted(missing)[1]


def test_stale_results_compare_the_kernels_of_the_recorded_backend(quick: Path, tmp_path: Path) -> None:
    """A result made on one backend is checked against that backend's
    kernel files, not the other's."""
    for name in quick.iterdir():
        (tmp_path / name.name).write_bytes(name.read_bytes())
    path = tmp_path / "memory.json"
    result = json.loads(path.read_text(encoding="utf-8"))
    other = "numpy" if result["backend"] != "numpy" else "numba"
    result["backend"] = other
    path.write_text(json.dumps(result), encoding="utf-8")
    stale = stale_results(tmp_path)
    assert len(stale) == 1 and "memory.json" in stale[0], stale
    for cell in result["kernels_sha256"]:  # the hashes of the other backend's files: current again
        source = Path(__file__).resolve().parent.parent / "derive" / "kernels"
        source = source / f"{cell}.py" if other == "numpy" else source / other / f"{cell}.py"
        result["kernels_sha256"][cell] = hashlib.sha256(source.read_bytes()).hexdigest()
    path.write_text(json.dumps(result), encoding="utf-8")
    assert stale_results(tmp_path) == []


def _numbers(value: object) -> list[float]:
    """Every number in a JSON value, in a fixed order."""
    if isinstance(value, dict):
        return [n for key in sorted(value) for n in _numbers(value[key])]
    if isinstance(value, list):
        return [n for item in value for n in _numbers(item)]
    return [float(value)] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def test_results_of_the_numpy_and_numba_kernels_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same experiment on either backend: the same numbers within float
    tolerance (the compiled σ and tanh differ from NumPy's by a few ulps,
    and Adam carries such differences along its 25 quick steps), each run
    on the kernels it records."""
    pytest.importorskip("numba", reason="the numba backend needs the fast extra")
    from derive.experiments import train as train_module

    loaded: list[str] = []

    def spy(cell: str, backend: str = "numpy"):  # noqa: ANN202 - a kernel module
        loaded.append(backend)
        return load_kernel(cell, backend)

    monkeypatch.setattr(train_module, "load_kernel", spy)
    cells = ",".join(gated_cells(CELLS)[:2])
    results = {}
    for backend in ("numpy", "numba"):
        out = tmp_path / backend
        loaded.clear()
        _run(out, "memory", "--jobs", "1", "--seeds", "1", "--cells", cells, "--backend", backend)
        assert backend in loaded, (backend, set(loaded))  # the models ran on it (parameter counts read any kernel)
        results[backend] = json.loads((out / "memory.json").read_text(encoding="utf-8"))
    assert results["numpy"]["backend"] == "numpy" and results["numba"]["backend"] == "numba"
    assert results["numpy"]["kernels_sha256"] != results["numba"]["kernels_sha256"]
    a, b = (np.array(_numbers(results[k]["data"])) for k in ("numpy", "numba"))
    assert a.shape == b.shape and a.size > 10
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-9)


def test_numba_backend_without_numba_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "numba" else real(name, *a))
    assert main(["experiment", "memory", "--quick", "--out", str(tmp_path), "--backend", "numba"]) == 2
    err = capsys.readouterr().err
    assert 'pip install -e ".[fast]"' in err and "numba" in err
    assert not (tmp_path / "memory.json").exists()


# -- bad arguments -----------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["memory", "--cells", "rnn,bogus"], "unknown cell 'bogus'"),
        (["memory", "--lengths", "10,0"], "length: expected at least 2, got 0"),
        (["gradient-flow", "--seeds", "-1"], "seed count: expected at least 1, got -1"),
        (["gradient-flow", "--max-lag", "0"], "max lag: expected at least 2, got 0"),
        (["memory", "--steps", "many"], "steps: expected an integer, got 'many'"),
        (["forget-bias", "--biases", "1,x"], "bias: expected a number, got 'x'"),
        (["forget-bias", "--biases", "1,nan"], "bias: expected a number between -100 and 100, got 'nan'"),
        (["forget-bias", "--biases", "1,1.0"], "bias listed twice in '1,1.0'"),
        (["gates", "--length", "1"], "length: expected at least 2, got 1"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_bad_argument_from_the_command_line_exits_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "derive.experiments.cli", "experiment", "memory", "--cells", "gruu"],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "unknown cell 'gruu'" in done.stderr
    assert done.stdout == ""


# -- the adding problem ------------------------------------------------------


def test_adding_problem_marks_one_value_in_each_half_and_sums_them() -> None:
    xs, targets = adding_problem(np.random.default_rng(0), 11, 500)
    assert xs.shape == (11, 500, 2) and targets.shape == (500,)
    markers = xs[:, :, 1]
    assert np.all(markers.sum(axis=0) == 2)
    assert np.all(markers[:5].sum(axis=0) == 1) and np.all(markers[5:].sum(axis=0) == 1)
    np.testing.assert_allclose(targets, (xs[:, :, 0] * markers).sum(axis=0))


def test_trivial_baseline_error_is_one_sixth() -> None:
    assert BASELINE_MSE == pytest.approx(1 / 6)
    _, targets = adding_problem(np.random.default_rng(1), 20, 200_000)
    assert baseline_mse(targets) == pytest.approx(1 / 6, abs=0.003)


def test_adding_problem_rejects_a_length_without_room_for_two_markers() -> None:
    with pytest.raises(ValueError, match="length"):
        adding_problem(np.random.default_rng(0), 1, 4)


# -- optimiser ---------------------------------------------------------------


def test_clipping_scales_to_the_bound_and_keeps_the_direction() -> None:
    grads = {"w": np.array([3.0, 0.0]), "b": np.array(4.0)}
    clipped, norm = clip_by_global_norm(grads, 1.0)
    assert norm == pytest.approx(5.0)
    assert global_norm(clipped) == pytest.approx(1.0)
    np.testing.assert_allclose(clipped["w"], [0.6, 0.0])
    np.testing.assert_allclose(clipped["b"], 0.8)
    assert grads["w"][0] == 3.0  # the input is left alone
    kept, _ = clip_by_global_norm(grads, 10.0)
    np.testing.assert_array_equal(kept["w"], grads["w"])


def test_adam_matches_torch_on_the_same_gradients() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    start = rng.normal(size=(3, 4))
    params = {"w": start.copy()}
    adam = Adam(lr=0.05)
    weight = torch.tensor(start, requires_grad=True)
    reference = torch.optim.Adam([weight], lr=0.05, betas=(0.9, 0.999), eps=1e-8)
    for _ in range(20):
        grad = rng.normal(size=(3, 4))
        adam.step(params, {"w": grad})
        weight.grad = torch.tensor(grad)
        reference.step()
    np.testing.assert_allclose(params["w"], weight.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_adam_first_step_moves_each_weight_by_the_learning_rate() -> None:
    params = {"w": np.array([1.0, -2.0, 3.0])}
    Adam(lr=0.1).step(params, {"w": np.array([5.0, -0.01, 0.0])})
    np.testing.assert_allclose(params["w"], [0.9, -1.9, 3.0], atol=1e-6)


def test_flat_parameters_are_views_of_one_vector() -> None:
    arrays = {"W": np.arange(6.0).reshape(2, 3), "b": np.array([7.0, 8.0]), "s": np.array(9.0)}
    flat = FlatParameters(arrays)
    np.testing.assert_array_equal(flat.flat, [0, 1, 2, 3, 4, 5, 7, 8, 9])
    assert {k: v.shape for k, v in flat.views.items()} == {"W": (2, 3), "b": (2,), "s": ()}
    flat.views["b"][1] = -1.0  # a view: the vector changes with it
    assert flat.flat[7] == -1.0 and arrays["b"][1] == 8.0  # the arrays given were copied
    grads = {"s": np.array(3.0), "W": np.ones((2, 3)), "b": np.array([1.0, 2.0])}  # any order: by name
    out = np.empty(flat.size)
    assert flat.gather(grads, out=out) is out
    np.testing.assert_array_equal(out, [1, 1, 1, 1, 1, 1, 1, 2, 3])
    np.testing.assert_array_equal(flat.split(out)["b"], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"arrays\['b'\]: expected shape \(2,\), got \(3,\)"):
        flat.gather({**grads, "b": np.zeros(3)})
    with pytest.raises(ValueError, match="an array named 's'"):
        flat.gather({"W": grads["W"], "b": grads["b"]})
    with pytest.raises(ValueError, match="one float dtype"):
        FlatParameters({"W": np.zeros(2), "n": np.zeros(2, dtype=int)})


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_training_on_the_flat_vector_is_the_per_array_adam_step(cell: str) -> None:
    """train() updates one flat vector; the result is, to the last bit, the
    per-array loop it replaces: clip_by_global_norm and Adam over the dict of
    arrays. A clip bound this low clips at every step, so that path runs too."""
    config = replace(QUICK_TRAINING, steps=12, clip=0.05)
    model, losses = train(cell, 7, 3, config)
    reference = Model.initial(cell, hidden_size(cell, config.param_target), 3)
    adam, data, expected = Adam(lr=config.lr), np.random.default_rng([3, 7, 2]), []
    trainable = reference.trainable()
    clipped = 0
    for _ in range(config.steps):
        xs, targets = adding_problem(data, 7, config.batch)
        loss, grads = reference.loss_and_grads(xs, targets)
        grads, norm = clip_by_global_norm(grads, config.clip)
        clipped += norm > config.clip
        adam.step(trainable, grads)
        expected.append(loss)
    assert clipped == config.steps
    assert losses == expected
    for name, value in reference.trainable().items():
        np.testing.assert_array_equal(model.trainable()[name], value, err_msg=name)
    owners = {id(array.base) for array in model.trainable().values()}  # views of one vector
    assert len(owners) == 1 and model.readout_b.base is not None


def test_loss_and_grads_is_the_same_for_any_sequence_length_in_turn() -> None:
    """The model keeps its dys buffer between calls: a call at another length
    or after another batch gives what the kernel gives with a fresh dys, zero
    but at the last step."""
    model = Model.initial("gru", 5, seed=1)
    batches = [adding_problem(np.random.default_rng(i), length, 4) for i, length in enumerate((6, 6, 4, 6, 9))]
    for xs, targets in batches:
        loss, grads = model.loss_and_grads(xs, targets)
        ys, cache = model.kernel.forward(model.params, xs)
        error = ys[-1] @ model.readout_w + model.readout_b - targets
        dys = np.zeros_like(ys)
        dys[-1] = np.outer(2.0 * error / error.size, model.readout_w)
        expected = model.kernel.backward(cache, dys)
        assert loss == float(np.mean(error**2))
        for name in model.params:
            np.testing.assert_array_equal(grads[name], expected[name], err_msg=name)


def test_adding_problem_draws_the_same_sequences_as_the_uniform_and_stack_recipe() -> None:
    """The batches come from the random stream exactly as the first version
    drew them (uniform values, then the two marked steps), so results made
    before stay reproducible."""
    for seed, length, batch in ((0, 2, 1), (1, 11, 5), (2, 50, 64)):
        rng, reference = np.random.default_rng(seed), np.random.default_rng(seed)
        for _ in range(3):
            xs, targets = adding_problem(rng, length, batch)
            values = reference.uniform(0.0, 1.0, size=(length, batch))
            first = reference.integers(0, length // 2, size=batch)
            second = reference.integers(length // 2, length, size=batch)
            markers = np.zeros((length, batch))
            markers[first, np.arange(batch)] = 1.0
            markers[second, np.arange(batch)] = 1.0
            np.testing.assert_array_equal(xs, np.stack([values, markers], axis=-1))
            np.testing.assert_array_equal(targets, values[first, np.arange(batch)] + values[second, np.arange(batch)])
            assert xs.flags.c_contiguous


def _blas_threads(_job: object) -> list[int]:
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


class _Job:
    cost = 1.0

    def label(self) -> str:
        return "job"


def test_jobs_run_in_this_process_use_one_blas_thread_like_the_workers() -> None:
    """--jobs 1 runs BLAS on one thread, like the pool's workers: the same
    numbers whatever the number of processes (a product split over threads
    can move the last bits), and no threads fighting over two cores."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        before = _blas_threads(None)
        if not before or max(before) < 2:
            pytest.skip("BLAS runs on one thread here whatever the limit")
        runs = run_jobs(_blas_threads, [_Job(), _Job()], processes=1, progress=Progress(2, "t", io.StringIO()))
        assert all(threads and set(threads) == {1} for threads in runs), runs  # SciPy's BLAS too, with Numba
        assert _blas_threads(None)[: len(before)] == before  # the limit is lifted afterwards


# -- models and measurements -------------------------------------------------


def test_cells_are_compared_at_about_the_same_parameter_count() -> None:
    counts = {cell: param_count(cell, hidden_size(cell, FULL_TRAINING.param_target)) for cell in CELLS}
    for count in counts.values():
        assert abs(count - FULL_TRAINING.param_target) <= 0.1 * FULL_TRAINING.param_target
    n_h = hidden_size("rnn", FULL_TRAINING.param_target)
    assert counts["rnn"] == n_h * (n_h + 2) + n_h + (n_h + 1)


def test_states_at_chunk_boundaries_match_one_forward_pass() -> None:
    kernel = load_kernel("lstm")
    params = kernel.init_params(2, 5, seed=3)
    xs, _ = adding_problem(np.random.default_rng(2), 12, 4)
    states = states_at(kernel, params, xs, [0, 4, 9, 12], KERNEL_STATES["lstm"])
    ys, _ = kernel.forward(params, xs)
    assert not states[0]["a"].any() and not states[0]["c"].any()
    for position in (4, 9, 12):
        np.testing.assert_allclose(states[position]["a"], ys[position - 1], rtol=1e-12)
        _, cache = kernel.forward(params, xs[:position])
        np.testing.assert_allclose(states[position]["c"], cache["final"]["c"], rtol=1e-12)


def test_rnn_gradient_ratio_equals_the_product_of_step_jacobians() -> None:
    kernel = load_kernel("rnn")
    n_h, length, lags = 4, 9, [1, 3, 9]
    params = kernel.init_params(2, n_h, seed=5)
    params["W_a"] *= 3.0  # a regime where the ratios differ clearly from 1
    xs, _ = adding_problem(np.random.default_rng(4), length, 3)
    ratios = gradient_ratios(kernel, params, xs, "a", ("a",), lags, np.random.default_rng(6))
    direction = np.random.default_rng(6).normal(size=(3, n_h))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    # Independent forward, then g^T ∂a(T)/∂a(T−k) with ∂a(t)/∂a(t−1) = diag(1 − a(t)²) W_aa.
    w_state, w_input = params["W_a"][:, :n_h], params["W_a"][:, n_h:]
    states = [np.zeros((3, n_h))]
    for t in range(length):
        states.append(np.tanh(states[-1] @ w_state.T + xs[t] @ w_input.T + params["b_a"]))
    for row, lag in enumerate(lags):
        for b in range(3):
            adjoint = direction[b]
            for t in range(length, length - lag, -1):
                adjoint = (adjoint * (1 - states[t][b] ** 2)) @ w_state
            assert ratios[row, b] == pytest.approx(np.linalg.norm(adjoint), rel=1e-10)


def test_lags_include_the_longest_one() -> None:
    assert lags_up_to(200)[-1] == 200 and 100 in lags_up_to(200)
    assert lags_up_to(20) == [1, 2, 3, 5, 7, 10, 15, 20]
    with pytest.raises(ValueError, match="max_lag"):
        lags_up_to(0)


def test_progress_writes_few_lines_off_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(100, "memory", stream)
    for i in range(100):
        progress.advance(f"job {i}")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and lines[-1].startswith("memory: 100/100")


def test_forget_bias_refuses_a_cell_without_keep_gate(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", "forget-bias", "--quick", "--cells", "rnn", "--out", "/nonexistent"])
    assert "'rnn' has no keep gate" in str(exit_info.value.code)
    assert "gru_simple,gru,gru_torch,lstm" in str(exit_info.value.code)


# -- gates -------------------------------------------------------------------


def test_keep_gate_is_read_off_the_cells_equations() -> None:
    found = {cell: keep_gate(cell) for cell in CELLS}
    assert found["rnn"] is None
    assert (found["gru"].gate, found["gru"].sign, found["gru"].bias) == ("Gu", -1, "b_u")
    assert (found["gru_simple"].gate, found["gru_simple"].sign) == ("Gu", -1)
    assert (found["gru_torch"].gate, found["gru_torch"].sign, found["gru_torch"].bias) == ("Gz", 1, "b_z")
    assert (found["lstm"].state, found["lstm"].gate, found["lstm"].sign, found["lstm"].bias) == ("c", "Gf", 1, "b_f")
    np.testing.assert_allclose(found["gru"].keep(np.array([0.25])), [0.75])
    np.testing.assert_allclose(found["lstm"].keep(np.array([0.25])), [0.25])


def _affine_of_x(cell: str, name: str, params: dict, xs: np.ndarray) -> np.ndarray:
    """An affine node of the input alone, W x(t) + b, at every step (not in the kernel's cache)."""
    import derive

    node = derive.cell(cell).node(name)
    assert node.parts == ("x",), node
    return xs @ params[node.weight].T + params[node.bias]


def test_keep_gate_matches_the_kernels_direct_path() -> None:
    """What the kernel computes: with the candidate frozen at 0, c(t) is the
    keep share times c(t−1) exactly, whatever the cell's names."""
    for cell in CELLS:
        gate = keep_gate(cell)
        if gate is None:
            continue
        kernel = load_kernel(cell)
        params = kernel.init_params(2, 3, seed=1)
        xs, _ = adding_problem(np.random.default_rng(3), 4, 5)
        _, cache = kernel.forward(params, xs)
        c = cache["c"]  # c(0) .. c(T)
        written = c[1:] - gate.keep(cache[gate.gate]) * c[:-1]
        # what is left does not depend on c(t-1) through the direct path:
        # the GRUs write Gu h (or (1 - Gz) h), the LSTM Gi h
        others = [k for k in cache if k not in ("params", "xs", "final", "c", gate.gate)
                  and isinstance(cache[k], np.ndarray)]
        h = cache["h"] if "h" in cache else _affine_of_x(cell, "h", params, xs)  # minGRU's linear candidate
        assert any(np.allclose(written, cache[k] * h) or np.allclose(written, (1 - cache[k]) * h)
                   for k in others + [gate.gate]), cell


def test_measure_counts_marked_steps_holding_units_and_what_is_carried() -> None:
    gate = keep_gate("lstm")
    # 4 steps, 1 sequence marked at steps 0 and 2, two units keeping 0.5 and 0.99
    values = np.array([[[0.5, 0.99]], [[0.5, 0.99]], [[0.1, 0.2]], [[0.5, 0.99]]])
    markers = np.array([[1.0], [0.0], [1.0], [0.0]])
    found = measure(gate, values, markers)
    assert found["keep_mean_marked"] == pytest.approx((0.5 + 0.99 + 0.1 + 0.2) / 4)
    assert found["keep_mean_unmarked"] == pytest.approx((0.5 + 0.99) / 2)
    assert found["keep_per_unit"] == pytest.approx([0.99, 0.5])
    assert found["holding_units"] == 1
    assert found["carried_best_unit"] == pytest.approx(0.99 * 0.2 * 0.99)  # steps 1..3 of the best unit
    flipped = measure(keep_gate("gru"), 1 - values, markers)
    assert flipped["keep_mean"] == pytest.approx(found["keep_mean"])


def test_a_keep_bias_moves_the_gate_the_way_that_keeps_more() -> None:
    for cell, sign in (("lstm", 1), ("gru", -1), ("gru_torch", 1)):
        gate = keep_gate(cell)
        plain = Model.initial(cell, 5, 2)
        shifted = initial_model(cell, 5, 2, 2.0)
        np.testing.assert_allclose(shifted.params[gate.bias] - plain.params[gate.bias], sign * 2.0)
        for name in plain.params:
            if name != gate.bias:
                np.testing.assert_array_equal(shifted.params[name], plain.params[name])
    with pytest.raises(ValueError, match="'rnn' has no keep gate"):
        initial_model("rnn", 5, 2, 1.0)


def test_learnt_at_is_where_the_running_loss_stays_below_the_bound() -> None:
    losses = [1.0] * 30 + [0.001] * 30
    assert learnt_at(losses, 0.1, window=10) == 40  # the first window of low losses ends at step 40
    assert learnt_at(losses + [1.0] * 10, 0.1, window=10) is None  # it did not stay below
    assert learnt_at([0.0] * 5, 0.1, window=10) is None
    assert learnt_at([0.001] * 12, 0.1, window=10) == 10


def test_states_followed_are_read_off_the_cells_and_kernels() -> None:
    from derive.experiments import STATE_MEASURED

    thread = {"rnn": "a", "gru_simple": "c", "gru": "c", "gru_torch": "c", "lstm": "c"}
    assert {c: STATE_MEASURED[c] for c in thread} == thread
    assert STATE_MEASURED["lstm_peephole"] == "c" and STATE_MEASURED["indrnn"] == "c"
    assert KERNEL_STATES["lstm"] == ("a", "c") and KERNEL_STATES["rnn"] == ("a",)
    assert list(KERNEL_STATES) == list(CELLS)
    with pytest.raises(KeyError):
        KERNEL_STATES["bogus"]


def test_committed_plots_are_what_their_results_draw(tmp_path: Path) -> None:
    """The committed SVGs are the plots of the committed JSON with the
    current plotting code (``derive experiment plots`` redraws them)."""
    for experiment in EXPERIMENTS:
        shutil.copy(COMMITTED / f"{experiment}.json", tmp_path / f"{experiment}.json")
    assert main(["experiment", "plots", "--out", str(tmp_path)]) == 0
    stale = [name for experiment in EXPERIMENTS for name in plot_names(experiment)
             if (tmp_path / name).read_bytes() != (COMMITTED / name).read_bytes()]
    assert not stale, f"redraw with `derive experiment plots`: {stale}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["gradient-flow", "--max-lag", "99999999999999999999"], "max lag: expected at most 10000, got 99999999999999999999"),
        (["memory", "--lengths", "10,99999999999"], "length: expected at most 10000, got 99999999999"),
        (["memory", "--seeds", "1000"], "seed count: expected at most 100"),
        (["memory", "--jobs", "100000"], "jobs: expected at most 64"),
    ],
)
def test_arguments_beyond_their_bounds_exit_2_before_computing(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_help_states_the_bounds() -> None:
    done = subprocess.run([sys.executable, "-m", "derive.experiments.cli", "experiment", "gradient-flow", "--help"],
                          capture_output=True, text=True, check=True)
    text = " ".join(done.stdout.split())
    assert "2 to 10000" in text and "1 ≤ N ≤ 100" in text and "1 to 64" in text


def _unwritable(tmp_path: Path) -> Path:
    """A directory nobody may write in: a chmod 555 one, or /sys under root (which ignores modes)."""
    if os.geteuid() == 0:
        return Path("/sys/derive-results")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    return locked / "results"


@pytest.mark.parametrize("where", ["/dev/null", "unwritable"])
def test_an_unusable_output_exits_2_before_computing(where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = str(_unwritable(tmp_path)) if where == "unwritable" else where
    import derive.experiments.cli as cli

    def must_not_run(*args, **kwargs):  # noqa: ANN002, ANN003
        raise AssertionError("computed before checking --out")

    monkeypatch.setattr(cli, "_run_memory", must_not_run)
    assert main(["experiment", "memory", "--quick", "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("derive experiment: error: --out:") and out in err


def test_results_go_to_the_project_not_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import derive.experiments.cli as cli

    monkeypatch.chdir(tmp_path)
    assert cli.output_dir(None, quick=False) == Path(cli.__file__).resolve().parents[2] / "docs/assets/generated/experiments"
    assert not (tmp_path / "docs").exists()


@pytest.mark.parametrize("cell", CELLS)
def test_training_gradients_are_the_derivatives_of_the_loss(cell: str) -> None:
    """The gradient training follows (kernel backward + readout) against central
    differences of the loss along random directions: a flipped sign or a dropped
    term in a kernel fails here, whatever the trained numbers look like."""
    from derive.experiments.train import Model

    model = Model.initial(cell, 4, seed=3)
    xs, targets = adding_problem(np.random.default_rng(4), 6, 5)
    _, grads = model.loss_and_grads(xs, targets)
    trainable = model.trainable()
    rng = np.random.default_rng(5)
    for name, value in trainable.items():
        direction = rng.normal(size=value.shape)
        saved = value.copy()
        eps = 1e-6
        value[...] = saved + eps * direction
        plus = model.loss_and_grads(xs, targets)[0]
        value[...] = saved - eps * direction
        minus = model.loss_and_grads(xs, targets)[0]
        value[...] = saved
        numeric, analytic = (plus - minus) / (2 * eps), float(np.sum(grads[name] * direction))
        err = abs(numeric - analytic) / max(abs(numeric) + abs(analytic), 1e-12)
        assert err < 1e-6, f"{cell} {name}: relative error {err:.2e} (finite differences {numeric:.6g}, backward {analytic:.6g})"

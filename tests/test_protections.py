"""Audit: every protection of the hardening issue has a test that fails without it.

Each case copies the repository, removes one protection (a one-line edit that must still apply: the
audit breaks loudly when the code moves), and runs the test that guards it: that test must fail. A
control run of the same tests on the unedited copy must pass, so a broken harness cannot pass the audit.
"""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.audit

# (protection, file, original text, text without the protection, guarding test)
CASES = [
    ("pickles only through the restricted unpickler", "src/ntkscaling/data/formats.py",
     'RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()', 'pickle.loads(data, encoding="bytes")',
     "tests/test_data.py::test_cifar10_refuses_code_in_pickle"),
    ("md5 of the official CIFAR-10 tarball", "src/ntkscaling/data/formats.py",
     "if got != facts.CIFAR10_MD5:", "if False:", "tests/test_data.py::test_cifar10_tarball"),
    ("negative labels", "src/ntkscaling/data/formats.py", "if len(y) and y.min() < 0:", "if False:",
     "tests/test_data.py::test_labels_out_of_range_are_refused"),
    ("label ranges", "src/ntkscaling/data/formats.py",
     "if len(y) and name in BUILTIN and y.max() >= BUILTIN[name].classes:", "if False:",
     "tests/test_data.py::test_labels_out_of_range_are_refused"),
    ("test set overlapping train", "src/ntkscaling/data/preparation.py",
     '    if policy == "error":\n        raise DatasetError(msg)', '    if False:\n        raise DatasetError(msg)',
     "tests/test_config.py::test_test_set_overlapping_train_stops_before_any_job"),
    ("n larger than the dataset", "src/ntkscaling/pipeline/dataset_checks.py",
     'elif ns[-1] > pool - ds["val_size"]:', "elif False:", "tests/test_config.py::test_bad_values_are_named"),
    ("kernel size limit", "src/ntkscaling/pipeline/dataset_checks.py", "if gb > limit:", "if False:",
     "tests/test_config.py::test_bad_values_are_named"),
    ("NaN/inf loss in training", "src/ntkscaling/training/divergence.py", "    if not math.isfinite(value):\n",
     "    if False:\n",
     "tests/test_training.py::test_nan_loss_stops_at_the_step_it_appears"),
    ("a network blowing up (finite) is stopped at evaluation", "src/ntkscaling/training/divergence.py",
     'if not math.isfinite(value) or (not name.endswith("_error") and value > BLOWUP * max(start, 1e-12)):',
     "if False:",
     "tests/test_training.py::test_finite_blowup_is_divergence_too"),
    ("checkpoints load weights-only", "src/ntkscaling/nets/models.py",
     "torch.load(ckpt_path, map_location=map_location, weights_only=True)",
     "torch.load(ckpt_path, map_location=map_location, weights_only=False)",
     "tests/test_training.py::test_crafted_checkpoint_is_refused_without_running_its_code"),
    ("resume only from this run's checkpoints", "src/ntkscaling/training/checkpoints.py",
     'mine is not None and mine.get("signature") == signature', "mine is not None",
     "tests/test_training.py::test_checkpoints_of_another_run_are_not_resumed"),
    ("NaN/inf kernel in a regression solve", "src/ntkscaling/arguments.py",
     "if finite and out.size and not np.all(np.isfinite(out)):", "if False:",
     "tests/test_regression.py::test_singular_kernel_gets_recorded_jitter"),
    ("a non-symmetric training kernel is refused (the solvers read one triangle)", "src/ntkscaling/arguments.py",
     "if gap > rtol * max(scale, np.finfo(np.float64).tiny):", "if False:",
     "tests/test_bad_inputs.py::test_bad_api_argument_is_named[non-symmetric training kernel]"),
    ("labels of the API lie in 0..C-1 (-1 is not the last class)", "src/ntkscaling/arguments.py",
     "if y.size and (y.min() < 0 or y.max() >= n_classes):", "if False:",
     "tests/test_bad_inputs.py::test_bad_api_argument_is_named[label -1]"),
    ("a factory file that does not load is refused at start-up", "src/ntkscaling/pipeline/config.py",
     "    except ValueError as e:  # not found, or its file does not load", "    except KeyError as e:",
     "tests/test_factory.py::test_a_factory_file_that_does_not_load_is_refused_naming_file_and_line"),
    ("run.sh never lifts the lock of a live Snakemake", "run.sh", "  if pid=$(live_snakemake); then",
     "  if false; then", "tests/test_run_sh.py::test_a_live_snakemake_keeps_its_lock"),
    ("outputs get the umask's permissions", "src/ntkscaling/files.py", "    os.fchmod(fd, 0o666 & ~_umask())\n", "",
     "tests/test_io.py::test_outputs_get_the_umask_permissions_as_open_would"),
    ("singular kernel gets a recorded jitter", "src/ntkscaling/analysis/regression.py",
     "for jitter in (0.0,) + JITTERS:", "for jitter in (0.0,):",
     "tests/test_regression.py::test_singular_kernel_gets_recorded_jitter"),
    ("validation set removed from the training pool", "src/ntkscaling/data/preparation.py", "    keep[val] = False\n", "",
     "tests/test_data.py::test_validation_set_is_fixed_balanced_and_disjoint_from_pool_and_test"),
    ("ridges chosen on validation rows, never test rows", "src/ntkscaling/analysis/regression.py",
     "select_ridge(K_tr, K[va, :n], y_tr, y_all[va],", "select_ridge(K_tr, K[te, :n], y_tr, y_all[te],",
     "tests/test_regression.py::test_tuned_ridge_never_reads_the_test_block"),
    ("centred networks subtract the frozen initial function", "src/ntkscaling/training/module.py",
     "return out if self.net0 is None else self.network.output_scale * (out - self.net0(x))", "return out",
     "tests/test_training.py::test_centred_network_is_exactly_zero_at_init_and_has_the_plain_networks_gradients"),
    ("outputs written to a temporary name and renamed", "src/ntkscaling/files.py",
     "        yield tmp\n        digest = file_digest(tmp) if is_workflow_file(path) else None\n"
     "        if digest:\n            _record_place_is_free(path)\n"
     "        os.replace(tmp, path)", "        yield path\n        digest = None",
     "tests/test_io.py::test_interrupted_write_leaves_no_partial_file"),
    ("a NaN kernel stops its job, naming it", "workflow/scripts/entk_kernel.py",
     "if not np.all(np.isfinite(K)):", "if False:",
     "tests/test_workflow_checks.py::test_nan_kernel_stops_its_job_naming_it"),
    ("numbers must be finite (NaN and inf pass every bound)", "src/ntkscaling/pipeline/schema.py",
     "and (isinstance(value, int) or math.isfinite(value)))", ")",
     "tests/test_bad_inputs.py::test_bad_config_value_is_named[lr NaN]"),
    ("integers must be integers, not whole floats", "src/ntkscaling/pipeline/schema.py",
     "    return isinstance(value, int) and not isinstance(value, bool)",
     "    return isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer()",
     "tests/test_bad_inputs.py::test_bad_config_value_is_named[float sample size]"),
    ("run names are plain folder names", "src/ntkscaling/pipeline/schema.yaml",
     'pattern: "^[A-Za-z0-9_][A-Za-z0-9_.-]*$"', 'pattern: "^[A-Za-z0-9_.-]*$"',
     "tests/test_bad_inputs.py::test_bad_config_value_is_named[run name '..']"),
    ("dataset.downsample checked against built-in image sizes at start-up", "src/ntkscaling/pipeline/dataset_checks.py",
     'if ds["name"] in BUILTIN and any(side % ds["downsample"] for side in BUILTIN[ds["name"]].shape[1:]):',
     "if False:", "tests/test_bad_inputs.py::test_bad_config_value_is_named[downsample not dividing the images]"),
    ("labels 0..K-1 with every class present (start-up)", "src/ntkscaling/data/labels.py",
     "    empty = [c for c, n in enumerate(train_counts) if n == 0]", "    empty = []",
     "tests/test_bad_inputs.py::test_label_problems_are_found_from_the_label_arrays_alone[gapped labels]"),
    ("labels 0..K-1 with every class present (data job)", "src/ntkscaling/data/labels.py",
     "    problem = _label_problem(k, *classes_without_examples(y_train, k), what)",
     "    problem = _label_problem(k, 0, [], what)",
     "tests/test_bad_inputs.py::test_bad_npz_dataset_is_refused_before_any_job_naming_the_file[gapped labels]"),
    ("requested classes must occur in the data", "src/ntkscaling/data/labels.py",
     "    missing = sorted(set(lut) - set(np.unique(y).tolist()))", "    missing = []",
     "tests/test_bad_inputs.py::test_requested_npz_class_that_does_not_occur_is_named"),
    ("inputs must be real numbers", "src/ntkscaling/data/formats.py", " or np.iscomplexobj(x):", ":",
     "tests/test_bad_inputs.py::test_bad_npz_dataset_is_refused_before_any_job_naming_the_file[complex inputs]"),
    ("an .npy is recognised by its magic bytes", "src/ntkscaling/files.py",
     '        require_magic(path, NPY_MAGIC, "an .npy array file")\n', "",
     "tests/test_bad_inputs.py::test_bad_kernel_file_is_named[read-random bytes]"),
    ("a checkpoint must be a torch zip archive", "src/ntkscaling/nets/models.py",
     'require_magic(path, ZIP_MAGIC, "a readable checkpoint (torch.save writes zip archives)")', "pass",
     "tests/test_bad_inputs.py::test_bad_checkpoint_is_named_and_never_runs_code[random bytes]"),
    ("expected faults end a job without a traceback", "src/ntkscaling/jobs.py",
     "        except InputError as e:", "        except ZeroDivisionError as e:",
     "tests/test_io.py::test_expected_fault_ends_a_job_with_its_message_and_no_traceback"),
    ("jobs die with a killed Snakemake", "src/ntkscaling/jobs.py", "    die_with_parent()\n", "",
     "tests/test_io.py::test_a_job_dies_with_the_process_that_started_it"),
]


def _copy(dest):
    dest.mkdir(parents=True)
    for part in ("Snakefile", "pyproject.toml", "run.sh", "workflow", "profiles", "config", "envs", "tests", "src"):
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, dest / part)
    return dest


def _pytest(repo, tests):
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=900)


WORKERS = max(1, min(2, os.cpu_count() or 1))  # each case is a subprocess: run two at a time on 2 cores


def _run_case(root, case):
    """(return code, output) of the guarding test with the protection removed; None: the line moved."""
    name, path, original, edited, test = case
    repo = _copy(root / "repo")
    target = repo / path
    text = target.read_text()
    if text.count(original) != 1:
        return None
    target.write_text(text.replace(original, edited))
    res = _pytest(repo, [test])
    return res.returncode, res.stdout


def _run_control(root):
    repo = _copy(root / "repo")
    res = _pytest(repo, sorted({case[-1] for case in CASES}))
    return res.returncode, res.stdout


@pytest.fixture(scope="module")
def audit(request, tmp_path_factory):
    """The selected cases and the control, run WORKERS at a time (each a pytest subprocess in its own copy)."""
    from concurrent.futures import ThreadPoolExecutor
    items = [item for item in request.session.items if item.module.__name__ == __name__]
    wanted = {item.callspec.params["name"] for item in items if hasattr(item, "callspec")}
    control = any(item.originalname == "test_control_unedited_copy_passes" for item in items)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        runs = {case[0]: pool.submit(_run_case, tmp_path_factory.mktemp("case"), case)
                for case in CASES if case[0] in wanted}
        if control:
            runs[None] = pool.submit(_run_control, tmp_path_factory.mktemp("control"))
        return {name: run.result() for name, run in runs.items()}


def test_control_unedited_copy_passes(audit):
    returncode, stdout = audit[None]
    assert returncode == 0, stdout[-3000:]
    assert "skipped" not in stdout.splitlines()[-1]


@pytest.mark.parametrize("name,path,original,edited,test", CASES, ids=[c[0] for c in CASES])
def test_guarding_test_fails_without_the_protection(audit, name, path, original, edited, test):
    result = audit[name]
    assert result is not None, f"{path}: the protected line moved; update the audit case {name!r}"
    returncode, stdout = result
    assert returncode == 1, f"{test} did not fail without '{name}':\n{stdout[-2000:]}"

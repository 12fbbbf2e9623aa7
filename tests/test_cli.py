"""Every front door answers bad input in one line with exit code 2: missing, empty and malformed files, a folder
where a file belongs and a file where a folder belongs, unknown names, out-of-range numbers. Each case runs
``main`` in-process (fast); a few run the installed ``rlhfbook-lab`` in a subprocess, as a user would."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from rlhfbook_lab.cli import build_parser, main

EXE = shutil.which("rlhfbook-lab") or f"{sys.executable} -m rlhfbook_lab.cli"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.jsonl").write_text("")
    (d / "not_json.jsonl").write_text('{"prompt": "What is 2 + 3?", "chosen": "5."\n')
    (d / "list.jsonl").write_text("[1, 2, 3]\n")
    (d / "no_keys.jsonl").write_text('{"prompt": "What is 2 + 3?", "chosen": "5."}\n')
    (d / "binary.jsonl").write_bytes(b"\xff\xfe\x00\x01garbage")
    (d / "a_file").write_text("not a folder")
    (d / "a_folder").mkdir()
    (d / "empty_model").mkdir()
    weights = {"correct": 1.0, "polite_opener": "high", "polite_excess": -0.25, "extra_words": -0.03,
               "unclean_end": -0.3, "repetition": -0.1}
    (d / "bad_spec.json").write_text(json.dumps({"name": "bad", "weights": weights}))
    (d / "unknown_feature.json").write_text(json.dumps({"name": "x", "weights": {**weights, "polite_opener": 0.2,
                                                                                  "charm": 0.5}}))
    (d / "not_json.json").write_text('{"name": "x", "weights": ')
    return d


CASES = [
    # (argv with {d} for the fixture folder, what the one line must say)
    ("sample --model nosuchmodel", "unknown model 'nosuchmodel'"),
    ("sample --model {d}/a_file", "is a file"),
    ("sample --model {d}/empty_model", "no model at"),
    ("sample --n 0", "--n: expected an int >= 1"),
    ("sample --n many", "--n: expected an int >= 1; got 'many'"),
    ("sample --temperature -1", "--temperature must be >= 0"),
    ("dpo --pairs {d}/missing.jsonl --out {d}/o1", "does not exist"),
    ("dpo --pairs {d}/a_folder --out {d}/o2", "is a folder; expected a jsonl file"),
    ("dpo --pairs {d}/empty.jsonl --out {d}/o3", "is empty"),
    ("dpo --pairs {d}/not_json.jsonl --out {d}/o4", "line 1: not valid JSON"),
    ("dpo --pairs {d}/list.jsonl --out {d}/o5", "line 1: expected a JSON object"),
    ("dpo --pairs {d}/no_keys.jsonl --out {d}/o6", "rejected"),
    ("dpo --pairs {d}/binary.jsonl --out {d}/o7", "not UTF-8"),
    ("dpo --policy nosuchmodel --out {d}/o8", "unknown model"),
    ("dpo --out {d}/a_file", "is a file"),
    ("dpo --steps 0", "steps must be an int >= 1"),
    ("dpo --lr -1", "lr must be a finite number >= 0"),
    ("dpo --beta 0", "beta must be a finite number > 0"),
    ("dpo --train.lr fast", "train.lr must be a number"),
    ("dpo --loss dpoo", "invalid choice: 'dpoo'"),
    ("dpo --no-such-flag 1", "unrecognized arguments"),
    ("rl --algo trpo", "invalid choice: 'trpo'"),
    ("rl --steps 0", "steps must be an int >= 1"),
    ("rl --reward oracle", "reward must be one of"),
    ("rl --group-size 1", "group_size must be >= 2"),
    ("rl --policy {d}/a_file --out {d}/o9", "is a file"),
    ("rl --reward rm --reward-model nosuchrm --out {d}/o10", "reward_model 'nosuchrm' not found"),
    ("rm --data {d}/missing_folder --fast", "no preference data"),
    ("rm --data {d}/a_file --fast", "is a file"),
    ("rm --data {d}/a_folder --fast", "no preference data"),
    ("rm --steps -5", "steps must be an int >= 1"),
    ("rm --recipe checks --fast", "invalid choice: 'checks'"),
    ("rm --recipe check --data {d}/missing_folder --fast", "no preference data"),
    ("rm --recipe mix --data {d}/missing_folder --fast", "no preference data"),
    ("rm --recipe check --margin 1 --fast", "do not apply"),
    ("sft --data {d}/a_file --out {d}/o11", "is a file"),
    ("sft --base nosuchmodel --out {d}/o12", "unknown model"),
    ("sft --examples 0", "--examples: expected an int >= 1"),
    ("sft-data --n-train 0", "--n-train: expected an int >= 1"),
    ("sft-data --out {d}/a_file", "is a file"),
    ("pref-data --scale 0", "--scale: expected a finite number > 0"),
    ("pref-data --scale -1", "--scale: expected a finite number > 0"),
    ("pref-data --policy nosuchmodel --out {d}/o13 --scale 0.001", "unknown model"),
    ("pretrain --preset huge --out {d}/o14", "preset must be one of"),
    ("pretrain --steps 0", "steps must be an int >= 1"),
    ("pipeline --out {d}/a_file", "is a file"),
    ("pipeline --stages sft,ppo", "stages must be a subset"),
    ("pipeline --rl-algo trpo", "rl_algo must be one of"),
    ("pipeline --reward-model gold", "reward_model must be one of"),
    ("eval --models sft-tiny nosuchmodel --out {d}/o17", "unknown model 'nosuchmodel'"),
    ("eval --models sft-tiny --out {d}/o18", "at least two different players"),
    ("eval --models sft-tiny sft-tiny@hot --out {d}/o19", "temperature after '@' must be a number"),
    ("eval --models base-tiny sft-tiny --out {d}/a_file", "is a file"),
    ("eval --models base-tiny sft-tiny --judge nosuchrm --out {d}/o20", "nosuchrm"),
    ("eval --prompts 0", "--prompts: expected an int >= 1"),
    ("eval --spec nosuchspec --out {d}/o25", "unknown spec 'nosuchspec'"),
    ("eval --spec {d}/bad_spec.json --out {d}/o26", "weights.polite_opener must be a finite number"),
    ("eval --spec {d}/unknown_feature.json --out {d}/o27", "unknown feature(s) ['charm']"),
    ("eval --spec {d}/missing.json --out {d}/o28", "does not exist"),
    ("dpo --spec {d}/not_json.json --out {d}/o29", "is not valid JSON"),
    ("dpo --spec nosuchspec --out {d}/o30", "unknown spec 'nosuchspec'"),
    ("scaling --model nosuchmodel --out {d}/o37", "unknown model 'nosuchmodel'"),
    ("scaling --out {d}/a_file", "is a file"),
    ("scaling --n 0", "--n: expected an int >= 1"),
    ("scaling --families chess --out {d}/o38", "families must be one of"),
    ("scaling --temperature 0", "--temperature: expected a finite number > 0"),
    ("judge --out {d}/o61 --steps 0", "--steps must be an int >= 1; got 0"),
    ("judge --out {d}/o62 --lr -1", "--lr"),
    ("judge --out {d}/a_file", "is a file"),
    ("rs --out {d}/a_file --fast", "is a file"),
    ("rs --out {d}/o51 --rule top_k", "rule must be one of"),
    ("rs --out {d}/o52 --selector random", "selector must be 'gold' or 'verifier'"),
    ("rs --out {d}/o53 --n 0", "n must be an int >= 1"),
    ("rs --out {d}/o54 --policy nosuchmodel --fast", "unknown model"),
    ("rlvr-study --out {d}/a_file", "exists: expected a new .json file"),
    ("rlvr-study --out {d}", "is a folder"),
    ("rlvr-study --steps 0 --out {d}/r.json", "--steps: expected an int >= 1"),
    ("rlvr-study --beta -0.1 --steps 1 --out {d}/r.json", "beta must be"),
    ("rlvr-study --policy nosuchmodel --steps 1 --out {d}/r.json", "unknown model 'nosuchmodel'"),
    ("overopt --out {d}/a_file --fast", "is a file"),
    ("overopt --out {d}/o21 --pool-size 0", "pool_size must be an int >= 1"),
    ("overopt --out {d}/o22 --proxy-sizes 1", "proxy_sizes must be"),
    ("overopt --out {d}/o23 --fast --proxy-sizes 60,5000", "at most 6 per proxy prompt"),
    ("overopt --out {d}/o24 --rl-betas -1", "rl_betas must be"),
    ("overopt --out {d}/o25 --rl-ensemble-rules max", "rl_ensemble_rules"),
    ("slides --lesson 99 --no-pdf --out {d}/o15", "no deck for lesson(s) ['99']"),
    ("site --lesson 99 --out {d}/o16", "no lesson notebook for ['99']"),
    ("tokenizer --out {d}/a_file", "is a file"),
    ("chat --port -1", "--port: expected an int >= 0"),
    ("chat --host 0.0.0.0", "allow-remote"),
    ("chat --model nameonly", "takes name=path"),
]


@pytest.mark.parametrize("argv, expected", CASES, ids=[c[0].split(" {")[0].replace(" ", "_") for c in CASES])
def test_bad_input_is_one_line_and_exit_code_2(files, capsys, argv, expected):
    with pytest.raises(SystemExit) as e:
        main(argv.format(d=files).split())
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2, err
    assert len(err.splitlines()) == 1, err
    command = argv.split()[0]
    assert err.startswith(f"rlhfbook-lab {command}: error:"), err
    assert expected in err, err


@pytest.mark.parametrize("argv, expected", [
    ("sample --model nosuchmodel", "unknown model 'nosuchmodel': expected a shipped checkpoint (base-tiny"),
    ("dpo --pairs {d}/empty.jsonl --out {d}/s1", "empty.jsonl is empty"),
    ("rl --steps -3", "steps must be an int >= 1"),
])
def test_the_installed_command_prints_one_line(files, argv, expected):
    """As a user runs it: the real entry point, its own process, stderr and the exit code."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([*EXE.split(), *argv.format(d=files).split()], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in out.stderr, out.stderr


def test_every_command_is_covered():
    """A new command needs its bad-input cases here."""
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    assert commands == {c[0].split()[0] for c in CASES}


def test_every_config_field_is_a_flag_with_its_docstring_as_help(capsys):
    with pytest.raises(SystemExit):
        main(["rl", "--help"])
    text = capsys.readouterr().out
    for flag in ("--lr", "--kl-estimator", "--group-size", "--families", "--bf16"):
        assert flag in text
    assert "Sampling temperature" in text  # RLConfig.temperature's docstring

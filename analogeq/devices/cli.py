"""``analogeq devices list|show|fit`` and ``analogeq drift``: read device presets, fit one to
measured pulse traces, and evaluate a trained network programmed into PCM at times after
programming."""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path

from analogeq import cli_types as T
from analogeq.jsonio import write_json


def _columns(*keys):
    return [(k, k, "") for k in keys]


def cmd_list(args) -> int:
    from analogeq.devices.presets import available_devices, load_device
    from analogeq.tables import format_table

    rows = []
    for name in available_devices():
        p = load_device(name)
        d = p.device
        rows.append({"name": name, "model": type(d).__name__, "dw_min": f"{d.dw_min:.3g}",
                     "range": f"[{d.w_min:g}, {d.w_max:g}]", "inference": "yes" if p.inference else "",
                     "description": p.description})
    print(format_table(rows, _columns("name", "model", "dw_min", "range", "inference", "description")))
    return 0


def cmd_show(args) -> int:
    from analogeq.devices.presets import load_device
    from analogeq.devices.response import plot_pulse_response, pulse_response
    from analogeq.tables import format_table

    preset = load_device(args.name)
    out = Path(args.out)
    resp = pulse_response(preset, n_devices=args.n_devices, seed=args.seed)
    png = plot_pulse_response(preset, resp, out / f"{preset.name}.png")
    record = {"name": preset.name, "description": preset.description,
              "model": type(preset.device).__name__, "params": preset.params,
              "sources": preset.sources,
              "inference": None if preset.inference is None else {
                  k: getattr(preset.inference, k) for k in preset.inference.__dataclass_fields__}}
    write_json(out / f"{preset.name}.json", record)  # strict JSON (params are validated finite)
    print(f"{preset.name}: {preset.description}  (model {record['model']})")
    params = {**preset.params, **(record["inference"] or {})}
    print(format_table([{"parameter": k, "value": str(v), "source": preset.sources.get(k, "")}
                        for k, v in params.items()], _columns("parameter", "value", "source")))
    w = resp["w"]
    n = resp["n_up"]
    print(f"pulse response of {w.shape[1]} devices (seed {args.seed}): after {n} up pulses "
          f"w = {w[n - 1].mean():.3f} +- {w[n - 1].std():.3f}; after {n} down pulses "
          f"w = {w[-1].mean():.3f} +- {w[-1].std():.3f}")
    print(f"wrote {png} and {out / (preset.name + '.json')}")
    return 0


def cmd_fit(args) -> int:
    from analogeq.devices.fit import fit_traces
    from analogeq.tables import format_table

    fit = fit_traces(args.traces, model=args.model, nodes=args.nodes)
    name = args.name or Path(args.traces).stem
    paths = fit.write(args.out, name)
    rows = [{"model": m + (" *" if m == fit.model else ""), "k": c["k"], "rms": c["rms"], "max": c["max_abs"],
             "bic": c["bic"]} for m, c in fit.candidates.items()]
    p = fit.provenance
    print(f"{p['source']}: {p['rows']} readings, {p['devices']} device(s), {p['cycles']} cycle(s), "
          f"values: {p['value_column']}")
    print(format_table(rows, [("model", "model (* = chosen by BIC)", ""), ("k", "params", "d"),
                              ("rms", "one-step rms", ".3g"), ("max", "max |error|", ".3g"), ("bic", "BIC", ".1f")]))
    print(format_table([{"parameter": k, "value": str(v)} for k, v in fit.params.items()],
                       _columns("parameter", "value")))
    print(f"wrote {paths['toml']}, {paths['json']} and {paths['png']}")
    return 0


def _preset_name(text: str) -> str:
    """A preset name: letters, digits, '.', '_', '-' (it names the output files)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", text):
        raise argparse.ArgumentTypeError(f"{text!r}: a name of 1..100 letters, digits, '.', '_' or '-' "
                                         "starting with a letter or digit")
    return text


def cmd_drift(args) -> int:
    import jax

    from analogeq.devices.presets import load_device
    from analogeq.hardware.drift import accuracy_over_time
    from analogeq.assembly import load_hardware
    from analogeq.plots import save_figure
    from analogeq.tables import format_table
    from analogeq.runs import load_run

    preset = load_device(args.device)
    if preset.inference is None:
        raise ValueError(f"device {preset.name!r} has no [inference] model; use one that has "
                         "(analogeq devices list, column 'inference')")
    run = load_run(args.run)
    network = run.model.as_model() if hasattr(run.model, "as_model") else run.model
    hardware = args.hardware or run.config.hardware or "realistic"
    try:
        hw = load_hardware(hardware)
    except ValueError as e:
        raise ValueError(f"--hardware {hardware!r}: {' '.join(str(e).split())}") from None
    out = Path(args.out) if args.out else Path(args.run) / "drift"
    out.mkdir(parents=True, exist_ok=True)
    records = {}
    for comp in ([True, False] if args.compare else [not args.no_compensation]):
        records["compensated" if comp else "raw"] = accuracy_over_time(
            network, hw, preset.inference, run.parts.data, args.times,
            jax.random.PRNGKey(args.seed), compensate=comp, cost=run.parts.cost, n_test=args.n_test)
    write_json(out / "drift.json", {"run": str(args.run), "device": preset.name, "records": records})
    with open(out / "drift.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["compensation", "t_s", "test_acc", "test_loss", "test_unconverged", "alpha"])
        for mode, recs in records.items():
            for r in recs:
                w.writerow([mode, r["t_s"], r["test_acc"], r["test_loss"], r["test_unconverged"], r["compensation"]])
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for mode, recs in records.items():
        ax.semilogx([r["t_s"] for r in recs], [r["test_acc"] for r in recs], "o-", label=mode)
    ax.set_xlabel("time after programming [s]")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{preset.name} drift", fontsize=9)
    ax.legend()
    save_figure(fig, out / "drift.png")
    rows = [{"mode": mode, **r} for mode, recs in records.items() for r in recs]
    print(format_table(rows, [("mode", "compensation", ""), ("t_s", "t [s]", ".3g"),
                              ("test_acc", "test acc", ".4f"), ("compensation", "alpha", ".3f"),
                              ("test_unconverged", "unconverged", "d")]))
    print(f"wrote {out}/drift.json, drift.csv, drift.png")
    return 0


def register(sub) -> None:
    """Add ``devices`` (``list``, ``show``, ``fit``) and ``drift`` to the ``analogeq`` parser."""
    from analogeq.devices.fit import MODELS as FIT_MODELS

    p = sub.add_parser("devices", help="pulsed device presets: list them, show one's pulse response, "
                       "fit one to measured traces",
                       description="Device presets live in device_models/devices/ (one TOML file "
                       "each, every number with its source). Use a name with 'train --device'.")
    dsub = p.add_subparsers(dest="devices_command", required=True)
    q = dsub.add_parser("list", help="the presets, one line each")
    q.set_defaults(func=cmd_list)
    q = dsub.add_parser("show", help="plot a preset's up/down pulse response over sampled devices "
                        "and print its parameters with sources")
    q.add_argument("name", type=T.preset_or_file("device"),
                   help="preset name (analogeq devices list) or a TOML file")
    q.add_argument("--n-devices", type=T.integer(1, 100_000), default=64,
                   help="devices sampled for the spread, 1..100000 (default 64)")
    q.add_argument("--seed", type=T.seed, default=0, help="seed of the device sample (default 0)")
    q.add_argument("--out", type=T.out_dir, default="runs/devices",
                   help="folder for NAME.png and NAME.json (default runs/devices)")
    q.set_defaults(func=cmd_show)
    q = dsub.add_parser("fit", help="fit a device model to measured up/down pulse traces (CSV) and write "
                        "a preset TOML, the fit as JSON and a plot of data vs fit",
                        description="Reads TRACES (CSV: pulse, direction, conductance [S] or weight, "
                        "optional device and cycle; see docs/device-fitting.md), fits each device by "
                        "least squares on one-step predictions, and writes OUT/NAME.toml (loadable with "
                        "--device), OUT/NAME.json and OUT/NAME.png.")
    q.add_argument("traces", type=T.in_file, help="the trace CSV file")
    q.add_argument("--model", choices=FIT_MODELS, default="auto",
                   help="device model; auto (default) fits every one and keeps the smallest BIC")
    q.add_argument("--nodes", type=T.integer(2, 32), default=5,
                   help="PiecewiseStep's node count, 2..32 (default 5)")
    q.add_argument("--name", type=_preset_name, default=None,
                   help="preset name and file stem (default: the CSV's stem)")
    q.add_argument("--out", type=T.out_dir, default="runs/devices",
                   help="folder for NAME.toml, NAME.json and NAME.png (default runs/devices)")
    q.set_defaults(func=cmd_fit)

    p = sub.add_parser("drift", help="accuracy of a trained network programmed into PCM, at times "
                       "after programming (drift, programming and 1/f read noise, compensation)",
                       description="Loads RUN (an 'analogeq train' output folder), programs its "
                       "weights into the device's inference model on a chip and evaluates the test "
                       "set at each --times value [s]; writes drift.json, drift.csv, drift.png.")
    p.add_argument("run", type=T.in_dir, help="run directory written by 'analogeq train'")
    p.add_argument("--device", type=T.preset_or_file("device"), default="pcm",
                   help="device preset with an [inference] model (default pcm)")
    p.add_argument("--hardware", type=T.preset_or_file("chip"), default="",
                   help="chip preset or TOML (default: the run's, else realistic)")
    p.add_argument("--times", type=T.number(0.0, 3.2e9, lo_open=True, unit="s (up to 100 years)"), nargs="+",
                   default=[1.0, 60.0, 3600.0, 86400.0, 2592000.0],
                   help="seconds after programming (default 1 s, 1 min, 1 h, 1 day, 30 days)")
    p.add_argument("--no-compensation", action="store_true", help="no global drift compensation")
    p.add_argument("--compare", action="store_true", help="evaluate with and without compensation")
    p.add_argument("--n-test", type=T.count, default=None, help="test samples, >= 1 (default: all)")
    p.add_argument("--seed", type=T.seed, default=0, help="seed of the programming and read noise")
    p.add_argument("--out", type=T.out_dir, default=None, help="output folder (default RUN/drift)")
    p.set_defaults(func=cmd_drift)

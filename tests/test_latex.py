"""report.tex: the leaderboard as a booktabs table — its numbers, bold cells and daggers against the
report's own figures, and (where pdflatex is installed) that it compiles with awkward task names."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from search import latex
from search import stats as S
from tests.test_report import LANGS, _orders, _tidy


def _rows(tex: str) -> dict[str, list[str]]:
    """Order cell -> the other cells of its table row."""
    body = tex.split(r"\midrule", 1)[1].split(r"\bottomrule")[0]
    out = {}
    for line in body.splitlines():
        if line.endswith(r"\\"):
            cells = [c.strip() for c in line[:-2].split(" & ")]
            out[cells[0]] = cells[1:]
    return out


def _value(cell: str) -> float:
    return float(re.search(r"-?\d+\.\d", cell).group())


def test_escape_every_special_character():
    assert latex.escape(r"a_b&c%d$e#f{g}h~i^j\k") == (r"a\_b\&c\%d\$e\#f\{g\}h\textasciitilde{}i"
                                                     r"\textasciicircum{}j\textbackslash{}k")
    assert latex.order_cell("mnli>squad_v2") == r"mnli $\rightarrow$ squad\_v2" and latex.order_cell("") == "F"


def test_escape_angle_brackets_and_bar():
    """< > | are no TeX specials, but pdflatex's default (OT1) text fonts print them as ¡ ¿ and a dash: a
    search named 'mbert->xnli' headed compare.tex's column 'mbert-¿xnli'."""
    assert latex.escape("mbert->xnli|a<b") == r"mbert-\textgreater{}xnli\textbar{}a\textless{}b"


def test_table_numbers_bold_and_daggers_against_the_report():
    rng = np.random.default_rng(2)
    res = S.analyse(_tidy(rng, delta=0.1, seeds=4), alpha=0.05)
    res["metric"] = "accuracy"
    tex = latex.table(res, name="xnli run_1", target="xnli", top=5)
    rows = _rows(tex)
    board = res["leaderboard"]
    shown = [r for r in board if r["order"] == S.F] + [r for r in board if r["order"] != S.F][:5]
    assert list(rows) == [latex.order_cell(r["order"]) for r in shown]  # F first, then the 5 best IF orders
    for r in shown:
        cells = rows[latex.order_cell(r["order"])]
        want = [r["per_language"][lg] for lg in LANGS] + [r["mean"], r["worst"]]
        assert [_value(c) for c in cells] == pytest.approx([round(100 * v, 1) for v in want])
        assert f"\\pm${100 * r['std']:.1f}" in cells[len(LANGS)]
    for j in range(len(LANGS) + 2):  # bold = the column's best among the rows shown
        col = [_value(rows[k][j]) for k in rows]
        assert [r"\textbf" in rows[k][j] for k in rows] == [v == max(col) for v in col]
    sig = {r["language"] for r in res["if_vs_f"]["per_language"] if r.get("significant") and r["delta_best"] > 0}
    assert sig  # the planted effect: the best order beats F somewhere
    best = rows[latex.order_cell(res["if_vs_f"]["best_order"])]
    assert {lg for lg, c in zip(LANGS, best) if "dagger" in c} == sig
    assert sum("dagger" in c for k in rows for c in rows[k]) == len(sig)  # nowhere else
    assert f"The 5 best of {len(board) - 1} IF orders" in tex and r"\label{tab:itt-xnli-run-1}" in tex


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (Debian: apt-get install "
                                                               "texlive-latex-base texlive-latex-recommended)")
def test_table_compiles_with_awkward_task_names(tmp_path):
    rng = np.random.default_rng(3)
    names = ["mnli_m", "qa&b", "x%y", "s~t"]
    orders = [">".join(o) for k in (0, 1, 2) for o in itertools.permutations(names, k)][:9]
    res = S.analyse(_tidy(rng, delta=0.05, orders=orders))
    res["metric"] = "f1_macro"
    (tmp_path / "t.tex").write_text(latex.table(res, name="n", target="pan_x<a>|b"))
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\n\\usepackage{booktabs,graphicx}\n\\begin{document}\n"
                                      "\\input{t.tex}\n\\end{document}\n")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


XNLI = "en ar bg de el es fr hi ru sw th tr ur vi zh".split()
PANX = ("af ar bg bn de el en es et eu fa fi fr he hi hu id it ja jv ka kk ko ml mr ms my nl pt ru sw ta te th tl tr "
        "ur vi yo zh").split()


def _many(langs: list[str]) -> dict:
    """A report's res over ``langs`` with orders of three real task names (the widest order cells)."""
    import pandas as pd

    tasks = ["mnli", "anli", "qqp", "squad_v2", "sst2"]
    orders = [""] + [">".join(o) for o in itertools.permutations(tasks, 3)][:8]
    rng = np.random.default_rng(4)
    rows = [{"order": o, "seed": s, "language": lg, "score": 0.7 - 0.004 * j + (0.03 if i == 1 else 0) + rng.normal(0, 0.01)}
            for i, o in enumerate(orders) for s in range(3) for j, lg in enumerate(langs)]
    res = S.analyse(pd.DataFrame(rows), alpha=0.05)
    res["metric"] = "accuracy"
    return res


def test_many_languages_split_over_stacked_tabulars_across_the_page():
    """XNLI's 15 languages made one tabular of 18 columns, about 1.5 times an ACL page's text width; now a
    table* with two stacked tabulars (9 and 8 number columns), each row's cells in order across them, F and the
    same orders in each, Avg. and Worst in the last. Three languages stay one tabular in a column of the page."""
    res = _many(XNLI)
    tex = latex.table(res, name="xnli", target="xnli")
    parts = tex.split(r"\end{tabular}")[:-1]
    assert tex.startswith(r"\begin{table*}") and len(parts) == 2
    heads = [p.split(r"\toprule")[1].split(r"\\")[0].split(" & ") for p in parts]
    assert [len(h) - 1 for h in heads] == [9, 8] and [h[0].strip() for h in heads] == ["Order", "Order"]
    assert [c.strip() for h in heads for c in h[1:]] == [*XNLI, "Avg.", "Worst"]
    rows = [_rows(p + r"\bottomrule") for p in parts]
    assert list(rows[0]) == list(rows[1]) and list(rows[0])[0] == "F"
    for r in res["leaderboard"][:3]:
        cells = rows[0][latex.order_cell(r["order"])] + rows[1][latex.order_cell(r["order"])]
        want = [r["per_language"][lg] for lg in XNLI] + [r["mean"], r["worst"]]
        assert [_value(c) for c in cells] == pytest.approx([round(100 * v, 1) for v in want])
    numbers = [latex.NUMBER_PT] * 42
    assert [len(b) for b in latex.layout(latex.order_chars(["mnli>squad_v2>sst2"]), numbers)[1]] == [11, 11, 10, 10]
    assert latex.layout(latex.order_chars(["mnli>squad_v2>sst2"]), numbers[:5])[0]  # too wide for a column (6
    # columns measured 329 pt)
    two = latex.table({**res, "languages": XNLI[:2]}, name="x", target="x", top=3)  # orders as long
    assert two.startswith(r"\begin{table*}") and two.count(r"\begin{tabular}") == 1
    short = latex.layout(latex.order_chars(["mnli", "qqp"]), numbers[:4])  # (measured: 183 pt of the 219)
    assert short == (False, [range(4)])


def _many_searches(n: int) -> dict:
    """compare.json's fields that compare.tex reads: ``n`` searches with long names (XTREME's tasks x models)."""
    rng = np.random.default_rng(6)
    searches = [{"name": f"xlmr-large-run{i}", "target": "udpos"} for i in range(n)]
    orders = [{"order": o, "mean_rank": float(i + 1), "least_gain_over_F": None if o == S.F else float(rng.normal(0, 0.01)),
               "per_search": {s["name"]: {"mean": float(0.7 + rng.normal(0, 0.01))} for s in searches}}
              for i, o in enumerate([S.F, "mnli", "qqp>mnli", "mnli>qqp"])]
    return {"searches": searches, "across": {"orders": orders}, "label": "mean over languages"}


def test_many_searches_split_over_stacked_tabulars():
    """compare.tex with 20 searches headed 'xlmr-large-run0 (udpos)' was one tabular of 2569 pt, shrunk to a
    page's 455 (to 0.18: unreadable); its columns are now split by their headers' widths too, each search's
    scores in its own column in order, Mean rank and Least gain over F last."""
    res = _many_searches(20)
    tex = latex.compare_table(res)
    parts = tex.split(r"\end{tabular}")[:-1]
    heads = [p.split(r"\toprule")[1].split(r"\\")[0].split(" & ")[1:] for p in parts]
    assert len(parts) >= 4 and all(len(h) <= 4 for h in heads), [len(h) for h in heads]
    names = [f"xlmr-large-run{i} (udpos)" for i in range(20)]
    assert [c.strip() for h in heads for c in h] == [*names, "Mean rank", "Least gain over F"]
    rows = [_rows(p + r"\bottomrule") for p in parts]
    mnli = [c for r in rows for c in r["mnli"]]
    want = [round(100 * res["across"]["orders"][1]["per_search"][f"xlmr-large-run{i}"]["mean"], 1) for i in range(20)]
    assert [_value(c) for c in mnli[:20]] == pytest.approx(want) and float(mnli[20]) == 2.0


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (Debian: apt-get install "
                                                               "texlive-latex-base texlive-latex-recommended)")
def test_many_languages_fit_an_acl_page(tmp_path):
    """On an ACL-sized two-column page (16 cm text, 7.7 cm columns), XNLI's and PAN-X's tables, a 4-language
    one and a comparison of 20 searches fit without an overfull line (XNLI's was 1.5 times the text width),
    and the stacked tabulars are not shrunk: each is at most the text's width as it is."""
    pre = ("\\documentclass[11pt,twocolumn]{article}\n\\usepackage[a4paper,textwidth=16cm,columnsep=0.6cm]{geometry}\n"
           "\\usepackage{booktabs,graphicx}\n\\begin{document}\n")
    tables = {name: latex.table(_many(langs), name=name, target=name)
              for name, langs in (("xnli", XNLI), ("panx", PANX), ("four", XNLI[:4]))}
    tables["compare20"] = latex.compare_table(_many_searches(20))
    for name, tex in tables.items():
        (tmp_path / f"{name}.tex").write_text(tex)
        (tmp_path / "doc.tex").write_text(pre + f"\\input{{{name}.tex}}\nText.\n\\end{{document}}\n")
        run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stdout[-2000:]
        assert "Overfull \\hbox" not in (tmp_path / "doc.log").read_text(errors="replace"), name
        # each tabular's own width, as set in the table (\small, its column gap): within the text's 455 pt
        gap = r"\setlength{\tabcolsep}{4pt}" if "table*" in tex else ""
        boxes = "".join(r"\sbox0{\small" + gap + t + r"}\typeout{W=\the\wd0}"
                        for t in re.findall(r"(\\begin\{tabular\}.*?\\end\{tabular\})", tex, re.S))
        (tmp_path / "w.tex").write_text(pre + boxes + "\n\\end{document}\n")
        run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "w.tex"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=120)
        widths = [float(w) for w in re.findall(r"W=([\d.]+)pt", run.stdout)]
        assert len(widths) == tex.count(r"\begin{tabular}") and max(widths) <= 455.24, (name, widths)


def test_report_writes_report_tex(tmp_path, capsys):
    from search.cli import main
    from tests.test_report import _fake_experiment

    exp = _fake_experiment(tmp_path, _tidy(np.random.default_rng(5), delta=0.1, orders=_orders()[:8]), stopped=())
    assert main(["report", str(exp), "--no-heuristics", "--no-mlflow", "--tex-top", "3"]) == 0
    assert "report.tex" in capsys.readouterr().out
    tex = (exp / "report" / "report.tex").read_text()
    assert tex.startswith(r"\begin{table*}") and tex.rstrip().endswith(r"\end{table*}") and r"\toprule" in tex
    assert len(_rows(tex)) == 1 + 3 and "The 3 best of 7 IF orders" in tex  # F, then --tex-top IF orders
    assert main(["report", str(exp), "--no-heuristics", "--no-mlflow", "--tex-top", "0"]) == 2
    assert "--tex-top 0" in capsys.readouterr().err


def test_compare_tex_against_compare_json(tmp_path):
    from search.cli import main
    from tests.test_compare import _three

    a, b, c = _three(tmp_path)
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), str(c), "--out", str(out), "--no-mlflow"]) == 0
    res = json.loads((out / "compare.json").read_text())
    tex = (out / "compare.tex").read_text()
    rows = _rows(tex)
    orders = res["across"]["orders"]
    shown = [r for r in orders if r["order"] == S.F] + [r for r in orders if r["order"] != S.F][:latex.TOP]
    assert list(rows) == [latex.order_cell(r["order"]) for r in shown]
    for r in shown:
        cells = rows[latex.order_cell(r["order"])]
        assert [_value(x) for x in cells[:3]] == pytest.approx([round(100 * r["per_search"][k]["mean"], 1) for k in "abc"])
        assert float(cells[3]) == pytest.approx(round(r["mean_rank"], 1))
        if r["least_gain_over_F"] is not None:
            assert _value(cells[4]) == pytest.approx(round(100 * r["least_gain_over_F"], 1))
    for j in range(3):  # bold: each search's best among the rows shown
        col = [_value(rows[k][j]) for k in rows]
        assert [r"\textbf" in rows[k][j] for k in rows] == [v == max(col) for v in col]
    if shutil.which("pdflatex"):
        (out / "doc.tex").write_text("\\documentclass{article}\n\\usepackage{booktabs,graphicx}\n\\begin{document}\n"
                                     "\\input{compare.tex}\n\\end{document}\n")
        run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=out,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stdout[-2000:]


def test_report_tex_names_the_split_its_scores_come_from(tmp_path, capsys):
    """A search evaluated on dev only (eval.splits: [dev]): the report reads dev, and report.tex says so (its
    caption said 'on the test split' whatever the split)."""
    from search.cli import main
    from tests.test_report import _fake_experiment

    exp = _fake_experiment(tmp_path, _tidy(np.random.default_rng(5), delta=0.1, orders=_orders()[:6]), stopped=())
    for f in exp.glob("trials/*/results.json"):
        r = json.loads(f.read_text())
        for s in r["seeds"].values():
            s["dev"] = s.pop("test")
        f.write_text(json.dumps(r))
    assert main(["report", str(exp), "--no-heuristics", "--no-mlflow"]) == 0
    tex = (exp / "report" / "report.tex").read_text()
    assert "on the dev split" in tex and "test split" not in tex
    from search.latex import split_words  # (the prior's agreement line names the means it compared with)

    assert split_words(json.loads((exp / "report" / "report.json").read_text()), "means") == "dev means"

"""The HTML report from crafted result dicts: static, offline, linked, escaped, charts and markers."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

from test_report_data import all_results, error_result, legacy_result, rich_result

from testbed.report.html import write_html_report
from testbed.report.svg import Marker, Series, line_chart, nice_ticks


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.refs.append(value)


def _parse(path: Path) -> _Links:
    p = _Links()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def _svgs(text: str) -> list[ET.Element]:
    return [ET.fromstring(m) for m in re.findall(r"<svg.*?</svg>", text, flags=re.S)]


def test_index_and_pages_are_static_offline_and_linked(tmp_path: Path) -> None:
    pcap = tmp_path / "run.pcapng"
    pcap.write_bytes(b"\x0a\x0d\x0d\x0a")
    index = write_html_report(all_results(), tmp_path / "report", pcaps={"a1b2c3": pcap})
    out = index.parent
    assert index == out / "index.html"
    assert sorted(p.name for p in out.glob("*.html")) == [
        "baseline.html",
        "censor-dies.html",
        "dtls-cut.html",
        "index.html",
    ]
    assert (out / "pcap" / "dtls-cut.pcapng").read_bytes() == pcap.read_bytes()
    for page in out.glob("*.html"):
        parsed = _parse(page)
        assert "script" not in parsed.tags and "link" not in parsed.tags and "img" not in parsed.tags
        for ref in parsed.refs:
            assert "://" not in ref, f"{page.name} refers outside the report: {ref}"
            if not ref.startswith("#"):
                assert (out / ref).exists(), f"{page.name}: broken link {ref}"
        text = page.read_text(encoding="utf-8")
        assert "url(" not in text and "@import" not in text  # nothing fetched by the stylesheet
        for svg in _svgs(text):  # every chart is well-formed XML
            assert svg.tag.endswith("svg")
    assert "pcap/dtls-cut.pcapng" in _parse(out / "dtls-cut.html").refs
    assert "pcap" not in " ".join(_parse(out / "baseline.html").refs)
    index_text = index.read_text(encoding="utf-8")
    assert "1 passed, 2 failed" in index_text
    assert 'href="dtls-cut.html"' in index_text


def test_rich_page_plots_samples_and_marks_censor_events(tmp_path: Path) -> None:
    page = write_html_report([rich_result()], tmp_path).parent / "dtls-cut.html"
    text = page.read_text(encoding="utf-8")
    svgs = _svgs(text)
    assert len(svgs) == 4  # bitrate, loss, RTT; the probes' timeline
    ns = "{http://www.w3.org/2000/svg}"
    bitrate, loss, rtt, probes = svgs
    (bar,) = probes.findall(f"{ns}rect[@rx='3'][@fill='#c0392b']")  # the failed probe, in red
    assert bar.findtext(f"{ns}title") == "https-probe: 0.00-5.01 s, exit 28"
    assert len(bitrate.findall(f"{ns}polyline")) >= 8  # per flow, sent and received
    assert len(loss.findall(f".//{ns}polyline")) >= 4
    assert len(rtt.findall(f".//{ns}polyline")) >= 2
    # Markers: first match (1), window on (2), cut (3), residual (4), window off (5), plus C and ✕.
    labels = [t.text for t in bitrate.findall(f"{ns}g/{ns}text")]
    assert labels == ["C", "1", "2", "✕", "3", "4", "5"]
    titles = [t.text or "" for t in bitrate.findall(f"{ns}g/{ns}title")]
    assert any(t.startswith("#3 at 4.20 s: cut · rule dtls-cut") for t in titles)
    # time_to_failure_s counts from relay:call:connected (0.3 s), not from the call's start.
    assert "failed at 4.00 s (3.7 s after connecting)" in titles
    # The window is shaded between its on and off events.
    assert bitrate.findall(f"{ns}rect[@class='band']")
    for word in (
        "kbit/s",
        "packet loss",
        "round-trip time",
        "Censor events",
        "Rules",
        "Flows seen by the censor",
        "cut after 3.5 s",
        "after_s=3.5",
        "loss 58.0% &gt; 5%",
        "blocked",
    ):
        assert word in text, word


def test_legacy_page_estimates_bitrate_and_says_what_is_missing(tmp_path: Path) -> None:
    text = (write_html_report([legacy_result()], tmp_path).parent / "baseline.html").read_text(encoding="utf-8")
    assert "estimated from per-second arrivals" in text
    assert "no per-second loss in this result" in text
    assert "call average 1.0 ms" in text
    assert "Censor events" not in text and "Rules</h2>" not in text


def test_error_page_escapes_and_shows_the_error(tmp_path: Path) -> None:
    r = error_result()
    r["error"] = "<b>bad</b> & worse"
    r["name"] = "evil<script>"
    out = write_html_report([r], tmp_path).parent
    (page,) = [p for p in out.glob("*.html") if p.name != "index.html"]
    text = page.read_text(encoding="utf-8")
    assert "&lt;b&gt;bad&lt;/b&gt; &amp; worse" in text
    assert "<script>" not in text and "<script>" not in (out / "index.html").read_text(encoding="utf-8")


def test_same_name_twice_gets_two_pages_and_pcap_by_name(tmp_path: Path) -> None:
    pcap = tmp_path / "b.pcap"
    pcap.write_bytes(b"x")
    out = write_html_report([legacy_result(), legacy_result()], tmp_path / "r", pcaps={"baseline": pcap}).parent
    assert (out / "baseline.html").exists() and (out / "baseline-2.html").exists()
    assert (out / "pcap" / "baseline.pcap").exists()


def test_timeline_origin_moves_censor_events_onto_the_call_axis(tmp_path: Path) -> None:
    r = rich_result()
    r["timeline_origin"] = {"censor": 100.0, "calls": {"video-call": 101.5}}
    text = (write_html_report([r], tmp_path).parent / "dtls-cut.html").read_text(encoding="utf-8")
    assert "#3 at 2.70 s: cut" in text  # 4.2 s after the censor started = 2.7 s into the call
    text = (write_html_report([rich_result()], tmp_path, censor_offset_s=0.2).parent / "dtls-cut.html").read_text(
        encoding="utf-8"
    )
    assert "#3 at 4.00 s: cut" in text
    r = rich_result()
    r["timeline_origin"] = {"censor": 100.0, "calls_phase": 100.5}
    r["calls"][0]["start_s"] = 1.0
    text = (write_html_report([r], tmp_path).parent / "dtls-cut.html").read_text(encoding="utf-8")
    assert "#3 at 2.70 s: cut" in text


def test_tolerates_missing_everything(tmp_path: Path) -> None:
    out = write_html_report(
        [{"name": "bare"}, {"calls": [{"name": "c", "samples": [{"t_s": 1}]}], "censor": {"events": "no"}}], tmp_path
    )
    assert out.exists()


def test_nice_ticks() -> None:
    assert nice_ticks(0, 10) == [0, 2, 4, 6, 8, 10]
    assert nice_ticks(0, 97) == [0, 20, 40, 60, 80, 100]
    assert nice_ticks(0, 0.9) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0, 0) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]


def test_chart_breaks_lines_at_gaps_and_escapes() -> None:
    svg = ET.fromstring(
        line_chart(
            [Series("a<b", [(0, 1.0), (1, 2.0), (2, None), (3, 1.0), (4, 1.5)], "#123456", dashed=True)],
            title="t&t",
            unit="ms",
            markers=[Marker(2.5, "1", "cut <now>")],
        )
    )
    ns = "{http://www.w3.org/2000/svg}"
    lines = svg.findall(f"{ns}polyline")
    assert len(lines) == 2 and all(pl.get("stroke-dasharray") for pl in lines)
    assert svg.get("aria-label") == "t&t"
    empty = line_chart([], title="x", unit="", empty_text="nothing here")
    assert "nothing here" in empty


def test_probes_and_the_capture_recorded_in_the_result(tmp_path: Path) -> None:
    pcap = tmp_path / "elsewhere" / "a1b2c3.pcapng"
    pcap.parent.mkdir()
    pcap.write_bytes(b"pcapng")
    r = rich_result()
    r["censor"]["capture"] = {"file": str(pcap), "packets": 2208, "limit": "max_bytes", "kernel_drops": {"c1": 3}}
    out = write_html_report([r], tmp_path / "report").parent
    text = (out / "dtls-cut.html").read_text(encoding="utf-8")
    assert 'href="pcap/dtls-cut.pcapng"' in text and (out / "pcap" / "dtls-cut.pcapng").exists()
    assert "2208 frames; stopped at its max_bytes limit; 3 frames lost by the capture" in text
    assert "<h2>Probes</h2>" in text and "https-probe" in text and "timeout &lt;x&gt;" in text


def test_a_capture_already_inside_the_report_is_linked_not_copied(tmp_path: Path) -> None:
    out = tmp_path / "report"
    pcap = out / "pcap" / "a1b2c3.pcapng"
    pcap.parent.mkdir(parents=True)
    pcap.write_bytes(b"pcapng")
    write_html_report([rich_result()], out, pcaps={"a1b2c3": pcap})
    assert 'href="pcap/a1b2c3.pcapng"' in (out / "dtls-cut.html").read_text(encoding="utf-8")
    assert sorted(p.name for p in (out / "pcap").iterdir()) == ["a1b2c3.pcapng"]


def test_the_call_page_names_the_selected_pairs_ip_version(tmp_path: Path) -> None:
    r = legacy_result()
    pair = r["calls"][0]["selected_candidate_pair"]
    pair.update(local_address="fd12:3456:789a:1::2", remote_address="fd12:3456:789a:2::2", family="v6")
    text = (write_html_report([r], tmp_path).parent / "baseline.html").read_text(encoding="utf-8")
    assert "fd12:3456:789a:2::2:51234 (host) over udp / IPv6" in text
    # A result written before the field existed shows the pair without a family.
    old = legacy_result()
    text = (write_html_report([old], tmp_path / "old").parent / "baseline.html").read_text(encoding="utf-8")
    assert "198.18.2.2:51234 (host) over udp" in text and "over udp / IP" not in text

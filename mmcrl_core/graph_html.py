"""A causal graph as one standalone interactive HTML page (vis-network via pyvis), offline and safe.

Why our own page around pyvis's node/edge data instead of pyvis's template: that template always
links Bootstrap from a CDN (a network request, and it fails offline) and, when a tooltip contains
"href", sets tooltips with innerHTML. Here:
- vis-network's JS and CSS (shipped inside pyvis) are inlined; a Content-Security-Policy of
  default-src 'none' forbids every network request the page could make;
- every user string is html.escape'd before it enters the page; the graph data travel as JSON in a
  <script type="application/json"> with <, > and & written as \\u escapes, so no label can close
  the script element;
- labels are html-escaped too and turned back into plain text in the browser by an inert
  DOMParser document (no script runs there), then drawn on the canvas as text, so they read as
  typed.
Colour = modality, shape = kind, edge width = |weight|, edge opacity = support, dashed = unoriented.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import networkx as nx

STATIC_LAYOUT_NODES = 150  # above this many nodes physics is slow to settle: use a fixed layout
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#d62728", "#393b79", "#637939", "#8c6d31"]
PHENOTYPE_COLOUR = "#7f7f7f"
CROSS_MODAL_EDGE = "#c0392b"
WITHIN_MODALITY_EDGE = "#5d6d7e"
SHAPES = {"latent": "dot", "phenotype": "diamond"}
REMOTE_REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def _vis_assets() -> tuple[str, str]:
    import pyvis

    folder = Path(pyvis.__file__).parent / "templates" / "lib" / "vis-9.1.2"
    js = (folder / "vis-network.min.js").read_text(encoding="utf-8")
    css = (folder / "vis-network.css").read_text(encoding="utf-8")
    # an inline script ends at the first "</script"; the library must not contain one
    if "</script" in js.lower() or "</style" in css.lower():
        raise RuntimeError("vis-network assets cannot be inlined safely")
    return js, css


def script_json(payload) -> str:
    """JSON safe inside a <script> element: no <, > or & characters left."""
    text = json.dumps(payload, ensure_ascii=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def modality_colours(graph: nx.DiGraph) -> dict[str, str]:
    latents = [(a.get("tier", 0), a.get("modality")) for _, a in graph.nodes(data=True) if a.get("kind") != "phenotype"]
    order = list(dict.fromkeys(m for _, m in sorted(latents, key=lambda t: (t[0], str(t[1])))))
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(order)}


def _title(lines: list[tuple[str, object]]) -> str:
    return "<br>".join(f"<b>{html.escape(k)}</b>: {html.escape(str(v))}" for k, v in lines if v not in ("", None))


def static_positions(graph: nx.DiGraph, width: float = 1000.0, height: float = 700.0) -> dict[str, tuple]:
    """Columns by modality tier (phenotypes last), latents stacked: readable without physics."""
    tiers = {}
    for node, attrs in graph.nodes(data=True):
        tiers[node] = attrs.get("tier", 0) if attrs.get("kind") != "phenotype" else 10**6
    columns = sorted(set(tiers.values()))
    index = {t: i for i, t in enumerate(columns)}
    layered = nx.DiGraph()
    layered.add_nodes_from((n, {"layer": index[t]}) for n, t in tiers.items())
    if not layered:
        return {}
    raw = nx.multipartite_layout(layered, subset_key="layer", scale=1.0)
    return {n: (float(x) * width / 2, float(y) * height / 2) for n, (x, y) in raw.items()}


def vis_data(graph: nx.DiGraph, static_layout: bool | None = None) -> dict:
    """Nodes, edges and options for vis-network, built through pyvis."""
    from pyvis.network import Network

    static = len(graph) > STATIC_LAYOUT_NODES if static_layout is None else static_layout
    positions = static_positions(graph) if static else {}
    colours = modality_colours(graph)
    net = Network(directed=True, cdn_resources="in_line")
    for node, attrs in graph.nodes(data=True):
        kind = attrs.get("kind", "latent")
        label = str(attrs.get("label", node))
        options = {
            "label": html.escape(label if label == node else f"{label}\n({node})"),
            "title": _title(
                [("latent" if kind == "latent" else "phenotype", node), ("label", label),
                 ("modality", attrs.get("modality", "")), ("description", attrs.get("description", "")),
                 ("stability", f"{attrs['stability']:.2f}" if "stability" in attrs else "")]
            ),
            "shape": SHAPES.get(kind, "dot"),
            "color": colours.get(attrs.get("modality"), PHENOTYPE_COLOUR),
            "size": 16 if kind == "latent" else 12,
            # read back by tests and the e2e check; escaped like every user string
            "mmcrl_label": html.escape(label),
            "modality": html.escape(str(attrs.get("modality", ""))),
            "kind": kind,
        }
        if node in positions:
            options["x"], options["y"] = positions[node]
        net.add_node(html.escape(node), **options)
    largest = max((abs(float(a.get("weight", 1.0))) for *_, a in graph.edges(data=True)), default=1.0) or 1.0
    for source, target, attrs in graph.edges(data=True):
        weight = float(attrs.get("weight", 1.0))
        support = float(attrs.get("support", 1.0))
        directed = attrs.get("orientation", "directed") == "directed"
        net.add_edge(
            html.escape(source),
            html.escape(target),
            width=1.0 + 7.0 * abs(weight) / largest,
            color={"color": CROSS_MODAL_EDGE if attrs.get("cross_modal") else WITHIN_MODALITY_EDGE,
                   "opacity": max(0.15, min(1.0, support))},
            arrows="to" if directed else "",
            dashes=not directed,
            title=_title([("edge", f"{source} -> {target}" if directed else f"{source} -- {target}"),
                          ("weight", f"{weight:.4g}"), ("support", f"{support:.2f}"),
                          ("method", attrs.get("method", "")), ("cross-modal", bool(attrs.get("cross_modal")))]),
            weight=weight,
            support=support,
            cross_modal=bool(attrs.get("cross_modal")),
            method=html.escape(str(attrs.get("method", ""))),
            orientation=attrs.get("orientation", "directed"),
        )
    nodes, edges, *_ = net.get_network_data()
    options = {
        "physics": {"enabled": not static, "stabilization": {"iterations": 300},
                    "barnesHut": {"springLength": 140, "avoidOverlap": 0.3}},
        "interaction": {"hover": True, "tooltipDelay": 120, "navigationButtons": False},
        "edges": {"smooth": {"type": "dynamic" if not static else "curvedCW", "roundness": 0.15}},
        "layout": {"randomSeed": 7},
    }
    return {"nodes": nodes, "edges": edges, "options": options, "static": static}


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<title>{title}</title>
<style>{vis_css}</style>
<style>
body {{ font-family: system-ui, sans-serif; margin: 0; }}
#mynetwork {{ width: 100%; height: {height}; border: 1px solid #ddd; background: #fff; }}
.legend {{ font-size: 12px; padding: 4px 8px; }}
.legend span {{ display: inline-block; margin-right: 12px; }}
.swatch {{ display: inline-block; width: 10px; height: 10px; border-radius: 5px; margin-right: 4px; }}
details {{ font-size: 12px; padding: 0 8px 8px; }}
dt {{ font-weight: bold; }}
</style>
<script>{vis_js}</script>
</head>
<body>
<div id="mynetwork" data-graph-ready="0"></div>
<div class="legend">{legend}</div>
<details><summary>Provenance</summary><dl>{provenance}</dl></details>
<script type="application/json" id="mmcrl-graph">{data}</script>
<script>
(function () {{
  var data = JSON.parse(document.getElementById("mmcrl-graph").textContent);
  // titles were html-escaped in Python; parsing them only restores our own <b> and <br>
  function element(text) {{ var d = document.createElement("div"); d.innerHTML = text; return d; }}
  // labels: escaped text back to plain text in an inert document; the canvas draws it as text
  var parser = new DOMParser();
  function plain(text) {{ return parser.parseFromString("<body>" + text, "text/html").body.textContent; }}
  data.nodes.forEach(function (n) {{
    if (typeof n.title === "string") n.title = element(n.title);
    if (typeof n.label === "string") n.label = plain(n.label);
  }});
  data.edges.forEach(function (e) {{ if (typeof e.title === "string") e.title = element(e.title); }});
  var container = document.getElementById("mynetwork");
  var network = new vis.Network(container,
      {{nodes: new vis.DataSet(data.nodes), edges: new vis.DataSet(data.edges)}}, data.options);
  network.once("afterDrawing", function () {{ container.setAttribute("data-graph-ready", "1"); }});
  network.once("stabilizationIterationsDone", function () {{ network.setOptions({{physics: false}}); }});
  window.mmcrlNetwork = network;
}})();
</script>
</body>
</html>
"""


def graph_html(graph: nx.DiGraph, static_layout: bool | None = None, height: str = "680px") -> str:
    if not re.fullmatch(r"\d{2,5}px|\d{1,3}%|\d{2,4}vh", height):
        raise ValueError(f"height {height!r} must look like '680px', '100%' or '80vh'")
    vis_js, vis_css = _vis_assets()
    data = vis_data(graph, static_layout)
    provenance = {k: v for k, v in graph.graph.items()}
    data["graph"] = {html.escape(str(k)): html.escape(str(v)) for k, v in provenance.items()}
    legend = "".join(
        f'<span><i class="swatch" style="background:{colour}"></i>{html.escape(str(modality))}</span>'
        for modality, colour in modality_colours(graph).items()
    )
    legend += "<span>&#9670; phenotype</span><span>&#9679; latent</span>"
    legend += f'<span style="color:{CROSS_MODAL_EDGE}">&#8594; cross-modal</span>'
    legend += "<span>fainter edge = lower support; dashed = unoriented</span>"
    page = _PAGE.format(
        title=html.escape(f"mmcrl causal graph - run {provenance.get('run_id', '')}"),
        vis_css=vis_css,
        vis_js=vis_js,
        height=height,
        legend=legend,
        provenance="".join(
            f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(str(v))}</dd>" for k, v in provenance.items()
        ),
        data=script_json(data),
    )
    offending = [m.group(0) for m in REMOTE_REFERENCE.finditer(page)]
    if offending:
        raise RuntimeError(f"the graph page would load remote resources: {offending[:3]}")
    return page


def read_html_graph(page: str) -> dict:
    """The graph data embedded in a page written by graph_html (for tests and re-imports)."""
    match = re.search(r'<script type="application/json" id="mmcrl-graph">(.*?)</script>', page, re.DOTALL)
    if not match:
        raise ValueError("not an mmcrl graph page")
    return json.loads(match.group(1))

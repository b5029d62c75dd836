"""Every export format of a causal graph (graph.py builds it), from one function.

All formats carry the provenance graph attributes and survive labels with quotes, ampersands,
angle brackets and non-ASCII:
  graphml    networkx GraphML (graph attributes as <data> of the graph)
  gexf       networkx GEXF; GEXF has no graph attributes, so provenance goes into
             <meta><description> as JSON (read_gexf_provenance reads it back)
  dot        our own writer (networkx's pydot bridge chokes on ':' in names); every ID quoted,
             graph attributes as statements; read_dot reads it back through pydot
  json       networkx node-link JSON
  cytoscape  Cytoscape.js JSON (networkx cytoscape_data)
  csv        FILE = edges (source, target, weight, cross_modal, support, method, orientation,
             labels), <stem>_adjacency.csv (index = parent, columns = child; an unoriented PC edge
             fills both cells) and <stem>_provenance.json
  html       standalone interactive page (graph_html.py): everything inline, no network requests
"""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import networkx as nx
import pandas as pd

from .errors import UserInputError
from .runfolder import EDGE_COLUMNS

FORMATS = {
    "graphml": ".graphml",
    "gexf": ".gexf",
    "dot": ".dot",
    "json": ".json",
    "cytoscape": ".cyjs",
    "csv": ".csv",
    "html": ".html",
}
EDGE_EXTRA_COLUMNS = ["method", "orientation", "source_label", "target_label"]
GEXF_PROVENANCE_PREFIX = "mmcrl provenance: "


# ------------------------------------------------------------------------------------ tables


def edges_frame(graph: nx.DiGraph) -> pd.DataFrame:
    rows = []
    for source, target, attrs in graph.edges(data=True):
        rows.append(
            {
                "source": source,
                "target": target,
                "weight": float(attrs.get("weight", 1.0)),
                "cross_modal": bool(attrs.get("cross_modal", False)),
                "support": float(attrs.get("support", 1.0)),
                "method": attrs.get("method", ""),
                "orientation": attrs.get("orientation", "directed"),
                "source_label": graph.nodes[source].get("label", source),
                "target_label": graph.nodes[target].get("label", target),
            }
        )
    return pd.DataFrame(rows, columns=EDGE_COLUMNS + EDGE_EXTRA_COLUMNS)


def adjacency_frame(graph: nx.DiGraph) -> pd.DataFrame:
    """index = parent, columns = child, value = edge weight (0 = no edge)."""
    nodes = list(graph.nodes)
    frame = pd.DataFrame(0.0, index=pd.Index(nodes, name="parent"), columns=nodes)
    for source, target, attrs in graph.edges(data=True):
        weight = float(attrs.get("weight", 1.0))
        frame.at[source, target] = weight
        if attrs.get("orientation") == "undirected":
            frame.at[target, source] = weight
    return frame


# ---------------------------------------------------------------------------------- writers


def _graphml(graph: nx.DiGraph) -> bytes:
    buffer = io.BytesIO()
    nx.write_graphml(graph, buffer, encoding="utf-8")
    return buffer.getvalue()


def _gexf(graph: nx.DiGraph) -> bytes:
    buffer = io.BytesIO()
    nx.write_gexf(graph, buffer, encoding="utf-8")
    ET.register_namespace("", "http://www.gexf.net/1.2draft")
    ET.register_namespace("xsi", "http://www.w3.org/2001/XMLSchema-instance")
    root = ET.fromstring(buffer.getvalue())
    namespace = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
    meta = root.find(f"{namespace}meta")
    if meta is None:
        meta = ET.SubElement(root, f"{namespace}meta")
    description = ET.SubElement(meta, f"{namespace}description")
    description.text = GEXF_PROVENANCE_PREFIX + json.dumps(dict(graph.graph), ensure_ascii=False)
    keywords = ET.SubElement(meta, f"{namespace}keywords")
    keywords.text = f"mmcrl, causal graph, run {graph.graph.get('run_id', '')}"
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def read_gexf_provenance(path_or_bytes: Path | bytes) -> dict:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    for element in ET.fromstring(data).iter():
        if element.tag.endswith("description") and (element.text or "").startswith(GEXF_PROVENANCE_PREFIX):
            return json.loads(element.text[len(GEXF_PROVENANCE_PREFIX):])
    return {}


def dot_quote(value) -> str:
    """A DOT double-quoted string: backslash and quote escaped, newlines as \\n."""
    if isinstance(value, bool):
        value = str(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "\\n")
    return f'"{text}"'


def dot_unquote(text: str) -> str:
    """Inverse of dot_quote for values pydot hands back (still quoted and escaped)."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


def _attr_list(attrs: dict) -> str:
    return ", ".join(f"{dot_quote(k)}={dot_quote(v)}" for k, v in attrs.items())


def _dot(graph: nx.DiGraph) -> bytes:
    lines = [f"digraph {dot_quote(graph.graph.get('run_id', 'mmcrl'))} {{"]
    lines += [f"  {dot_quote(k)}={dot_quote(v)};" for k, v in graph.graph.items()]
    for node, attrs in graph.nodes(data=True):
        lines.append(f"  {dot_quote(node)} [{_attr_list(attrs)}];")
    for source, target, attrs in graph.edges(data=True):
        extra = {"dir": "none"} if attrs.get("orientation") == "undirected" else {}
        lines.append(f"  {dot_quote(source)} -> {dot_quote(target)} [{_attr_list({**attrs, **extra})}];")
    lines.append("}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def read_dot(path_or_text: Path | str) -> nx.DiGraph:
    """A DOT file we wrote, back as a DiGraph (all attribute values as strings, unescaped)."""
    import pydot

    text = Path(path_or_text).read_text(encoding="utf-8") if isinstance(path_or_text, Path) else path_or_text
    parsed = pydot.graph_from_dot_data(text)
    if not parsed:
        raise UserInputError("not a DOT graph")
    dot = parsed[0]
    graph = nx.DiGraph(**{dot_unquote(k): dot_unquote(v) for k, v in dot.get_attributes().items()})
    for node in dot.get_nodes():
        name = dot_unquote(node.get_name())
        if name in {"graph", "node", "edge"}:
            continue
        graph.add_node(name, **{dot_unquote(k): dot_unquote(v) for k, v in node.get_attributes().items()})
    for edge in dot.get_edges():
        attrs = {dot_unquote(k): dot_unquote(v) for k, v in edge.get_attributes().items()}
        attrs.pop("dir", None)
        graph.add_edge(dot_unquote(str(edge.get_source())), dot_unquote(str(edge.get_destination())), **attrs)
    return graph


def _node_link(graph: nx.DiGraph) -> bytes:
    data = nx.node_link_data(graph, edges="edges")
    return json.dumps(data, ensure_ascii=False, indent=1).encode("utf-8")


def _cytoscape(graph: nx.DiGraph) -> bytes:
    data = nx.cytoscape_data(graph)
    data["data"] = dict(graph.graph)  # a dict, as Cytoscape.js expects, not networkx's list of pairs
    return json.dumps(data, ensure_ascii=False, indent=1).encode("utf-8")


def read_cytoscape(path_or_bytes: Path | bytes) -> nx.DiGraph:
    data = json.loads(path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes())
    provenance = data.get("data", {})
    data["data"] = list(provenance.items()) if isinstance(provenance, dict) else provenance
    graph = nx.cytoscape_graph(data)
    for _, attrs in graph.nodes(data=True):
        attrs.pop("name", None)
        attrs.pop("value", None)
    return graph


def _csv_files(graph: nx.DiGraph, stem: str) -> dict[str, bytes]:
    return {
        f"{stem}.csv": edges_frame(graph).to_csv(index=False).encode("utf-8"),
        f"{stem}_adjacency.csv": adjacency_frame(graph).to_csv().encode("utf-8"),
        f"{stem}_provenance.json": json.dumps(dict(graph.graph), ensure_ascii=False, indent=1).encode("utf-8"),
    }


def export_bytes(graph: nx.DiGraph, fmt: str, stem: str = "graph", **html_options) -> dict[str, bytes]:
    """The files of one export format, as {file name: content} (csv gives three files)."""
    if fmt not in FORMATS:
        raise UserInputError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "csv":
        return _csv_files(graph, stem)
    if fmt == "html":
        from .graph_html import graph_html

        # a standalone page fills most of the browser window
        content = graph_html(graph, **({"height": "85vh"} | html_options)).encode("utf-8")
    else:
        writer = {"graphml": _graphml, "gexf": _gexf, "dot": _dot, "json": _node_link, "cytoscape": _cytoscape}
        content = writer[fmt](graph)
    return {f"{stem}{FORMATS[fmt]}": content}


def export_graph(graph: nx.DiGraph, fmt: str, out: Path | str, **html_options) -> list[Path]:
    """Write `graph` in format `fmt` to `out` (csv also writes its companions next to it)."""
    out = Path(out)
    if out.is_dir():
        raise UserInputError(f"--out {out} is a folder; give a file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    files = export_bytes(graph, fmt, stem=out.stem, **html_options)
    written = []
    for name, content in files.items():
        # the main file keeps the exact name asked for (suffix included); companions sit beside it
        path = out if name == f"{out.stem}{FORMATS[fmt]}" else out.with_name(name)
        path.write_bytes(content)
        written.append(path)
    return written

//! The picture of a [`Map`]: one self-contained SVG ([`render_svg`]) and the HTML page
//! that shows it and keeps it current ([`render_page`]).
//!
//! Drawing: a node is a circle filled by its [`Health`] with its address below it and its
//! capsules and drops under that; a link is two arrows, one per direction, each offset to
//! its own side and labelled with its number on that side (so `a → b` and `b → a` never
//! share a label). An arrow is blue and thicker with more traffic, grey when idle, dotted
//! when its receiver did not say, dashed when the link is one-sided. Every node and arrow
//! has a `<title>` (the browser's tooltip) with the details; a legend sits at the bottom.
//! Nodes carry `data-address` and `data-health` attributes for scripts and tests.

use std::fmt::Write as _;

use super::layout::layout;
use super::model::{Flow, Health, Map, MapLink, Unit, show};

/// Pixels between the two closest nodes (room for circles and labels).
pub const SPACING: f64 = 150.0;
/// Radius of a node's circle.
pub const RADIUS: f64 = 22.0;
/// Side margins.
const MARGIN: f64 = 90.0;
/// Height of the title band.
const HEADER: f64 = 64.0;
/// Height of the legend band.
const FOOTER: f64 = 56.0;
/// Narrowest picture (the legend's width).
const MIN_WIDTH: f64 = 760.0;

/// The fill of a node of this health.
pub fn colour(h: Health) -> &'static str {
    match h {
        Health::Up => "#2e9d4f",
        Health::Degraded => "#e8a317",
        Health::Unreachable => "#d7263d",
        Health::Unknown => "#9aa0a6",
    }
}

/// `s` safe inside XML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Node centres in pixels and the picture's size.
fn place(map: &Map) -> (Vec<(f64, f64)>, f64, f64) {
    let edges: Vec<(usize, usize)> = map.links.iter().map(|l| (l.a, l.b)).collect();
    let unit = layout(map.nodes.len(), &edges);
    let span_x = unit.iter().map(|q| q.0).fold(0.0, f64::max) * SPACING;
    let span_y = unit.iter().map(|q| q.1).fold(0.0, f64::max) * SPACING;
    let width = (span_x + 2.0 * MARGIN).max(MIN_WIDTH).ceil();
    // Above the top row: room for arrow labels; below the bottom row: its three labels.
    let height = (span_y + HEADER + 45.0 + 80.0 + FOOTER).ceil();
    let left = (width - span_x) / 2.0;
    let top = HEADER + 45.0;
    let at = unit
        .iter()
        .map(|q| (left + q.0 * SPACING, top + q.1 * SPACING))
        .collect();
    (at, width, height)
}

/// A node's second and third label lines: its capsules and drops, or why there are none.
fn node_numbers(map: &Map, i: usize) -> (String, String) {
    let n = &map.nodes[i];
    let per = match map.unit {
        Unit::PerSecond => "/s",
        Unit::Total => "",
    };
    let number = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| show(v, Unit::Total));
    match (n.health, n.capsules) {
        (Health::Unreachable, _) if map.unit == Unit::PerSecond => {
            ("unreachable".to_owned(), String::new())
        }
        (Health::Unknown, _) => ("not asked".to_owned(), String::new()),
        (_, Some(_)) => (
            format!("{} capsules{per}", number(n.capsules)),
            format!("{} drops{per}", number(n.drops)),
        ),
        (_, None) => ("rates after".to_owned(), "the next poll".to_owned()),
    }
}

/// One direction of a link: the arrow, its label, its tooltip.
fn arrow(
    out: &mut String,
    map: &Map,
    link: &MapLink,
    (from, to): (usize, usize),
    flow: &Flow,
    at: &[(f64, f64)],
) {
    let (p, q) = (at[from], at[to]);
    let (dx, dy) = (q.0 - p.0, q.1 - p.1);
    let len = (dx * dx + dy * dy).sqrt().max(1e-6);
    let (ux, uy) = (dx / len, dy / len);
    // Each direction keeps to its own side of the centre line.
    let (nx, ny) = (-uy, ux);
    let off = 4.0;
    let (x1, y1) = (p.0 + ux * RADIUS + nx * off, p.1 + uy * RADIUS + ny * off);
    let (x2, y2) = (
        q.0 - ux * (RADIUS + 4.0) + nx * off,
        q.1 - uy * (RADIUS + 4.0) + ny * off,
    );
    let (a, b) = (&map.nodes[from].address, &map.nodes[to].address);
    let (class, width, marker) = match flow.value {
        _ if link.one_sided() => ("one-sided", 1.5, "arrow-idle"),
        None => ("unknown", 1.2, "arrow-idle"),
        Some(v) if v > 0.0 => ("active", 1.5 + (1.0 + v).log10() * 1.2, "arrow-active"),
        Some(_) => ("idle", 1.5, "arrow-idle"),
    };
    let label = flow
        .value
        .map_or_else(|| "?".to_owned(), |v| show(v, map.unit));
    let what = match map.unit {
        Unit::PerSecond => "datagrams/s (capsules and code), counted by the receiver",
        Unit::Total => "capsules in the run",
    };
    let mut tip = format!("{a} → {b}: {label} {what}");
    if flow.listed == Some(false) {
        let _ = write!(tip, "; {a} does not list {b} as a neighbour");
    }
    if link.one_sided() && flow.listed == Some(true) {
        let _ = write!(tip, "; {b} does not list {a}: it drops what comes this way");
    }
    if let Some(h) = flow.heard_s_ago {
        let _ = write!(tip, "; {b} last heard {a} {h:.1} s ago");
    }
    let _ = writeln!(
        out,
        "<g class=\"flow {class}\" data-from=\"{}\" data-to=\"{}\"><title>{}</title>\
         <line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" stroke-width=\"{width:.1}\" \
         marker-end=\"url(#{marker})\"/>",
        escape(a),
        escape(b),
        escape(&tip)
    );
    let (mx, my) = ((x1 + x2) / 2.0 + nx * 11.0, (y1 + y2) / 2.0 + ny * 11.0);
    let _ = writeln!(
        out,
        "<text x=\"{mx:.1}\" y=\"{my:.1}\" class=\"rate\">{}</text></g>",
        escape(&label)
    );
}

/// The map as one SVG document.
pub fn render_svg(map: &Map) -> String {
    let (at, width, height) = place(map);
    let mut o = String::with_capacity(4096 + 800 * (map.nodes.len() + map.links.len()));
    let _ = writeln!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"ants-map\" width=\"{width}\" \
         height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"DejaVu Sans, \
         Verdana, sans-serif\" font-size=\"12\">"
    );
    o.push_str(
        "<style>\
         .flow line{stroke:#8a9099}.flow.active line{stroke:#1f6feb}\
         .flow.unknown line{stroke-dasharray:2 3}.flow.one-sided line{stroke:#b0541a;stroke-dasharray:7 5}\
         .rate{font-size:11px;fill:#24292f;text-anchor:middle;dominant-baseline:middle;\
         paint-order:stroke;stroke:#fff;stroke-width:3px}\
         .node circle{stroke:#1f2328;stroke-width:1.5}\
         .addr{font-weight:bold;text-anchor:middle;fill:#1f2328}\
         .sub{font-size:11px;text-anchor:middle;fill:#57606a}\
         .title{font-size:18px;font-weight:bold;fill:#1f2328}.subtitle{fill:#57606a}\
         .legend{font-size:11px;fill:#24292f}\
         </style>\n\
         <defs>\
         <marker id=\"arrow-active\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"11\" \
         markerHeight=\"11\" markerUnits=\"userSpaceOnUse\" orient=\"auto\"><path d=\"M0,0L10,5L0,10z\" fill=\"#1f6feb\"/></marker>\
         <marker id=\"arrow-idle\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"9\" \
         markerHeight=\"9\" markerUnits=\"userSpaceOnUse\" orient=\"auto\"><path d=\"M0,0L10,5L0,10z\" fill=\"#8a9099\"/></marker>\
         </defs>\n",
    );
    let _ = writeln!(
        o,
        "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n\
         <text x=\"16\" y=\"28\" class=\"title\">{}</text>\n\
         <text x=\"16\" y=\"48\" class=\"subtitle\">{}</text>",
        escape(&map.title),
        escape(&map.subtitle)
    );
    o.push_str("<g class=\"links\">\n");
    for l in &map.links {
        arrow(&mut o, map, l, (l.a, l.b), &l.a_to_b, &at);
        arrow(&mut o, map, l, (l.b, l.a), &l.b_to_a, &at);
    }
    o.push_str("</g>\n<g class=\"nodes\">\n");
    for (i, n) in map.nodes.iter().enumerate() {
        let (x, y) = at[i];
        let (sub, sub2) = node_numbers(map, i);
        let mut tip = format!("{} — {}", n.address, n.health.name());
        if let Some(up) = n.uptime_s {
            let _ = write!(tip, "\nup {up:.0} s");
        }
        for d in &n.detail {
            let _ = write!(tip, "\n{d}");
        }
        let _ = writeln!(
            o,
            "<g class=\"node\" data-address=\"{addr}\" data-health=\"{h}\"><title>{tip}</title>\
             <circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{RADIUS}\" fill=\"{fill}\"/>\
             <text x=\"{x:.1}\" y=\"{ay:.1}\" class=\"addr\">{addr}</text>\
             <text x=\"{x:.1}\" y=\"{sy:.1}\" class=\"sub\">{sub}</text>\
             <text x=\"{x:.1}\" y=\"{ty:.1}\" class=\"sub\">{sub2}</text></g>",
            addr = escape(&n.address),
            h = n.health.name(),
            tip = escape(&tip),
            fill = colour(n.health),
            ay = y + RADIUS + 16.0,
            sy = y + RADIUS + 30.0,
            sub = escape(&sub),
            ty = y + RADIUS + 43.0,
            sub2 = escape(&sub2),
        );
    }
    o.push_str("</g>\n");
    legend(&mut o, map, height);
    o.push_str("</svg>\n");
    o
}

/// The legend band: the health colours with how many nodes have each, then the arrows.
fn legend(o: &mut String, map: &Map, height: f64) {
    let y = height - FOOTER / 2.0;
    let census = map.census();
    let _ = writeln!(o, "<g class=\"legend\">");
    let mut x = 16.0;
    for h in Health::ALL {
        let n = census.get(&h).copied().unwrap_or(0);
        let _ = writeln!(
            o,
            "<circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"6\" fill=\"{}\" stroke=\"#1f2328\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{} {n}</text>",
            x + 6.0,
            colour(h),
            x + 16.0,
            y + 4.0,
            h.name()
        );
        x += 110.0;
    }
    let rate = match map.unit {
        Unit::PerSecond => "datagrams/s",
        Unit::Total => "capsules",
    };
    for (class, text) in [
        ("active", rate.to_owned()),
        ("idle", "idle".to_owned()),
        ("one-sided", "one-sided".to_owned()),
    ] {
        let _ = writeln!(
            o,
            "<g class=\"flow {class}\"><line x1=\"{x:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" \
             stroke-width=\"2\"/></g><text x=\"{:.1}\" y=\"{:.1}\">{text}</text>",
            x + 24.0,
            x + 30.0,
            y + 4.0
        );
        x += 40.0 + 7.0 * text.len() as f64;
    }
    o.push_str("</g>\n");
}

/// How a page keeps itself current.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refresh {
    /// Served by `ants map --listen`: fetch `map.svg` every this many seconds and swap it in
    /// (the page says when the server stops answering).
    Fetch(f64),
    /// A file rewritten by `ants map --html`: reload every this many seconds.
    Reload(f64),
    /// A picture taken once.
    Never,
}

/// The map's page: one HTML document with the SVG inline, no external resources.
pub fn render_page(map: &Map, svg: &str, refresh: Refresh) -> String {
    let meta = match refresh {
        Refresh::Reload(s) => format!("<meta http-equiv=\"refresh\" content=\"{}\">", s.ceil()),
        _ => String::new(),
    };
    let script = match refresh {
        Refresh::Fetch(s) => format!(
            "<script>\n\
             const every = {ms};\n\
             const state = document.getElementById('state');\n\
             async function refresh() {{\n\
             \x20 try {{\n\
             \x20   const r = await fetch('map.svg', {{cache: 'no-store'}});\n\
             \x20   if (!r.ok) throw new Error('HTTP ' + r.status);\n\
             \x20   document.getElementById('map').innerHTML = await r.text();\n\
             \x20   state.textContent = 'live, updated ' + new Date().toLocaleTimeString();\n\
             \x20   state.className = 'live';\n\
             \x20 }} catch (e) {{\n\
             \x20   state.textContent = 'the map server does not answer (' + e.message + '); showing the last picture';\n\
             \x20   state.className = 'stale';\n\
             \x20 }}\n\
             }}\n\
             setInterval(refresh, every);\n\
             </script>",
            ms = (s * 1000.0).round()
        ),
        _ => String::new(),
    };
    let state = match refresh {
        Refresh::Fetch(s) => format!("live, every {s} s"),
        Refresh::Reload(s) => format!("reloads every {s} s"),
        Refresh::Never => "taken once".to_owned(),
    };
    let json = if matches!(refresh, Refresh::Fetch(_)) {
        " · <a href=\"map.json\">map.json</a>"
    } else {
        ""
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">{meta}\
         <title>{title}</title>\n<style>\
         body{{margin:0;background:#f6f8fa;font:13px DejaVu Sans,Verdana,sans-serif;color:#1f2328}}\
         header{{padding:6px 12px}}#map svg{{display:block;max-width:100%;height:auto}}\
         .live{{color:#1a7f37}}.stale{{color:#cf222e;font-weight:bold}}\
         </style></head>\n<body><header><span id=\"state\">{state}</span>{json}</header>\n\
         <div id=\"map\">{svg}</div>\n{script}\n</body></html>\n",
        title = escape(&map.title),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::model::{MapNode, Unit};

    fn node(address: &str, health: Health) -> MapNode {
        MapNode {
            address: address.to_owned(),
            health,
            detail: vec!["<why>".to_owned()],
            uptime_s: Some(3.0),
            capsules: Some(12.0),
            drops: Some(0.0),
        }
    }

    fn flow(v: Option<f64>) -> Flow {
        Flow {
            listed: Some(true),
            value: v,
            heard_s_ago: Some(0.2),
        }
    }

    fn sample() -> Map {
        Map {
            title: "ants map".into(),
            subtitle: "3 of 3 nodes answered".into(),
            unit: Unit::PerSecond,
            nodes: vec![
                node("198.18.0.1", Health::Up),
                node("198.18.0.2", Health::Degraded),
                node("198.18.0.3", Health::Unreachable),
            ],
            links: vec![
                MapLink {
                    a: 0,
                    b: 1,
                    a_to_b: flow(Some(1234.0)),
                    b_to_a: flow(Some(0.0)),
                },
                MapLink {
                    a: 1,
                    b: 2,
                    a_to_b: flow(None),
                    b_to_a: Flow {
                        listed: Some(false),
                        ..flow(None)
                    },
                },
            ],
        }
    }

    /// Attribute `name` of every element `<tag …>` in `svg`.
    fn attrs(svg: &str, tag: &str, name: &str) -> Vec<String> {
        svg.split(&format!("<{tag} "))
            .skip(1)
            .filter_map(|e| {
                let e = format!(" {}", &e[..e.find('>').unwrap_or(e.len())]);
                let at = e.find(&format!(" {name}=\""))? + name.len() + 3;
                Some(e[at..at + e[at..].find('"')?].to_owned())
            })
            .collect()
    }

    #[test]
    fn every_node_and_both_directions_of_every_link_are_drawn() {
        let m = sample();
        let svg = render_svg(&m);
        assert_eq!(
            attrs(&svg, "g", "data-address"),
            ["198.18.0.1", "198.18.0.2", "198.18.0.3"]
        );
        assert_eq!(
            attrs(&svg, "g", "data-health"),
            ["up", "degraded", "unreachable"]
        );
        let froms = attrs(&svg, "g", "data-from");
        let tos = attrs(&svg, "g", "data-to");
        let pairs: Vec<(String, String)> = froms.into_iter().zip(tos).collect();
        assert_eq!(pairs.len(), 4);
        for (a, b) in [("1", "2"), ("2", "1"), ("2", "3"), ("3", "2")] {
            let p = (format!("198.18.0.{a}"), format!("198.18.0.{b}"));
            assert!(pairs.contains(&p), "{p:?} in {pairs:?}");
        }
        assert!(svg.contains(">1.2k/s</text>"), "the busy direction's label");
        assert!(svg.contains("class=\"flow active\""));
        assert!(svg.contains("class=\"flow idle\""));
        assert!(
            svg.contains("class=\"flow one-sided\""),
            "2 - 3 is listed by 2 only"
        );
        assert!(svg.contains("&lt;why&gt;"), "details are escaped");
        assert!(!svg.contains("<why>"));
        assert!(
            svg.contains("up 1") && svg.contains("unreachable 1"),
            "legend census"
        );
        // Fills by health.
        let fills = attrs(&svg, "circle", "fill");
        for h in [Health::Up, Health::Degraded, Health::Unreachable] {
            assert!(fills.iter().any(|f| f == colour(h)), "{h:?}");
        }
    }

    #[test]
    fn node_circles_do_not_overlap_and_fit_in_the_picture() {
        let m = sample();
        let svg = render_svg(&m);
        let num = |v: Vec<String>| -> Vec<f64> { v.iter().map(|s| s.parse().unwrap()).collect() };
        let (width, height) = (
            num(attrs(&svg, "svg", "width"))[0],
            num(attrs(&svg, "svg", "height"))[0],
        );
        let cx = num(attrs(&svg, "circle", "cx"));
        let cy = num(attrs(&svg, "circle", "cy"));
        let r = num(attrs(&svg, "circle", "r"));
        let nodes: Vec<(f64, f64)> = cx
            .iter()
            .zip(&cy)
            .zip(&r)
            .filter(|(_, r)| **r == RADIUS)
            .map(|((x, y), _)| (*x, *y))
            .collect();
        assert_eq!(nodes.len(), 3);
        for (i, p) in nodes.iter().enumerate() {
            assert!(
                p.0 - RADIUS >= 0.0 && p.0 + RADIUS <= width,
                "{p:?} in {width}"
            );
            assert!(
                p.1 - RADIUS >= HEADER && p.1 + RADIUS + 47.0 <= height - FOOTER,
                "{p:?}"
            );
            for q in &nodes[i + 1..] {
                let d = ((p.0 - q.0).powi(2) + (p.1 - q.1).powi(2)).sqrt();
                assert!(d >= SPACING - 1e-6, "{p:?} {q:?}");
            }
        }
    }

    #[test]
    fn the_page_is_self_contained_and_refreshes_as_asked() {
        let m = sample();
        let svg = render_svg(&m);
        let live = render_page(&m, &svg, Refresh::Fetch(2.0));
        assert!(live.contains(&svg));
        assert!(live.contains("fetch('map.svg'") && live.contains("const every = 2000;"));
        assert!(
            !live.contains("src=") && !live.contains("<link"),
            "no external resources"
        );
        let file = render_page(&m, &svg, Refresh::Reload(5.0));
        assert!(file.contains("http-equiv=\"refresh\" content=\"5\""));
        assert!(!file.contains("<script>"));
        let once = render_page(&m, &svg, Refresh::Never);
        assert!(!once.contains("<script>") && !once.contains("http-equiv"));
    }

    #[test]
    fn a_total_map_says_capsules() {
        let mut m = sample();
        m.unit = Unit::Total;
        let svg = render_svg(&m);
        assert!(
            svg.contains(">12 capsules</text>") && svg.contains(">0 drops</text>"),
            "{svg}"
        );
        assert!(svg.contains(">1.2k</text>"));
    }
}

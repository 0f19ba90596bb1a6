//! A hand-written SVG: delivered pps against offered pps, one panel per packet size, one
//! colour per mode; sweep points joined by lines, flat-out rounds as hollow circles, and
//! the diagonal where nothing is lost.

use super::*;

const W: f64 = 440.0;
const H: f64 = 340.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

fn colour(m: Mode) -> &'static str {
    match m {
        Mode::Kernel => "#1f77b4",
        Mode::AntsIp => "#d62728",
        Mode::AntsXdp => "#9467bd",
        Mode::AntsAfxdp => "#ff7f0e",
        Mode::AntsCapsule => "#2ca02c",
        Mode::AntsXdpCapsule => "#8c564b",
    }
}

/// A round axis maximum and tick step covering `max`.
pub(crate) fn nice_axis(max: f64) -> (f64, f64) {
    if !(max.is_finite() && max > 0.0) {
        return (1.0, 0.2);
    }
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((max / step).ceil() * step, step)
}

fn label(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn panel(r: &Report, size: usize, x0: f64) -> String {
    let pts: Vec<&Sample> = r.samples.iter().filter(|s| s.size == size).collect();
    let max = pts
        .iter()
        .map(|s| s.offered_pps.max(s.delivered_pps))
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let (amax, step) = nice_axis(max);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let px = |v: f64| x0 + LEFT + v / amax * pw;
    let py = |v: f64| TOP + ph - v / amax * ph;
    let mut s = format!(
        "<text x=\"{:.1}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{size}-byte IPv4 packets</text>\n\
         <rect x=\"{:.1}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#444\"/>\n\
         <line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#aaa\" stroke-dasharray=\"4 4\"/>\n",
        x0 + LEFT + pw / 2.0,
        x0 + LEFT,
        px(0.0),
        py(0.0),
        px(amax),
        py(amax)
    );
    let mut t = 0.0;
    while t <= amax + step / 2.0 {
        s += &format!(
            "<line x1=\"{x:.1}\" y1=\"{b:.1}\" x2=\"{x:.1}\" y2=\"{b2:.1}\" stroke=\"#444\"/>\
             <text x=\"{x:.1}\" y=\"{ty:.1}\" text-anchor=\"middle\" font-size=\"11\">{l}</text>\n\
             <line x1=\"{l0:.1}\" y1=\"{y:.1}\" x2=\"{l1:.1}\" y2=\"{y:.1}\" stroke=\"#444\"/>\
             <text x=\"{tx:.1}\" y=\"{y4:.1}\" text-anchor=\"end\" font-size=\"11\">{l}</text>\n",
            x = px(t),
            b = py(0.0),
            b2 = py(0.0) + 5.0,
            ty = py(0.0) + 18.0,
            l0 = px(0.0) - 5.0,
            l1 = px(0.0),
            y = py(t),
            tx = px(0.0) - 8.0,
            y4 = py(t) + 4.0,
            l = label(t)
        );
        t += step;
    }
    s += &format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"12\">offered pps</text>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"12\" transform=\"rotate(-90 {:.1} {:.1})\">delivered pps</text>\n",
        x0 + LEFT + pw / 2.0,
        H - 10.0,
        x0 + 16.0,
        TOP + ph / 2.0,
        x0 + 16.0,
        TOP + ph / 2.0
    );
    for &mode in &r.options.modes {
        let c = colour(mode);
        let mut swept: Vec<&&Sample> = pts
            .iter()
            .filter(|p| p.mode == mode && p.target_pps.is_some())
            .collect();
        swept.sort_by(|a, b| a.offered_pps.total_cmp(&b.offered_pps));
        if swept.len() > 1 {
            let path: Vec<String> = swept
                .iter()
                .map(|p| format!("{:.1},{:.1}", px(p.offered_pps), py(p.delivered_pps)))
                .collect();
            s += &format!(
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"1.5\"/>\n",
                path.join(" ")
            );
        }
        for p in pts.iter().filter(|p| p.mode == mode) {
            let (x, y) = (px(p.offered_pps), py(p.delivered_pps));
            if !(x.is_finite() && y.is_finite()) {
                continue;
            }
            s += &if p.target_pps.is_some() {
                format!("<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{c}\"/>\n")
            } else {
                format!(
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"5\" fill=\"none\" stroke=\"{c}\" stroke-width=\"1.5\"/>\n"
                )
            };
        }
    }
    s
}

/// The whole figure.
pub(crate) fn svg(r: &Report) -> String {
    let sizes = &r.options.sizes;
    let width = W * sizes.len().max(1) as f64;
    let height = H + 30.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for (i, &size) in sizes.iter().enumerate() {
        s += &panel(r, size, i as f64 * W);
    }
    let mut x = LEFT;
    for &mode in &r.options.modes {
        s += &format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\">{}</text>\n",
            x,
            H + 12.0,
            colour(mode),
            x + 10.0,
            H + 16.0,
            mode.name()
        );
        x += 120.0;
    }
    s += &format!(
        "<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"#555\">hollow: flat out (rounds); filled: paced sweep; dashed: no loss</text>\n",
        H + 16.0
    );
    s + "</svg>\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_are_round() {
        assert_eq!(nice_axis(167_000.0), (200_000.0, 50_000.0));
        assert_eq!(nice_axis(9.0), (10.0, 2.0));
        assert_eq!(nice_axis(0.0), (1.0, 0.2));
    }
}

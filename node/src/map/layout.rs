//! Where each node goes: a force-directed layout (Fruchterman–Reingold) from a fixed start,
//! so the same graph always gets the same picture, and an operator who looks again finds
//! each node where it was.
//!
//! Steps: nodes start on a circle in index order (jittered by a fixed-seed generator, so
//! symmetric graphs do not balance on a saddle); 300 rounds of edge springs against
//! all-pairs repulsion with a cooling step limit and a weak pull to the centre (so separate
//! components stay in view); the result is turned so its long axis is horizontal (screens
//! are wide; a line is drawn as a line) with node 0 on the left; pairs that ended up
//! closer than the ideal edge length are pushed apart; and finally everything is scaled so
//! that **no two nodes are closer than 1** — the caller multiplies by the pixel spacing its
//! circles and labels need, and nothing overlaps.

use ants_core::rng::SplitMix64;

/// Rounds of the force simulation (fewer for big graphs: all-pairs repulsion is O(n²)).
fn rounds(n: usize) -> usize {
    if n > 400 { 80 } else { 300 }
}

/// Positions of nodes `0..n` joined by `edges` (pairs of node indices; out-of-range pairs
/// and self-loops are ignored), with every pair of nodes at least 1 apart and the bounding
/// box's top-left corner at (0, 0).
pub fn layout(n: usize, edges: &[(usize, usize)]) -> Vec<(f64, f64)> {
    let edges: Vec<(usize, usize)> = edges
        .iter()
        .copied()
        .filter(|&(a, b)| a < n && b < n && a != b)
        .collect();
    let mut p = start(n);
    relax(&mut p, &edges);
    turn(&mut p);
    separate(&mut p);
    normalise(&mut p);
    p
}

/// Nodes on a circle of circumference ~n (ideal edge length 1), slightly jittered.
fn start(n: usize) -> Vec<(f64, f64)> {
    let mut rng = SplitMix64::new(0x0061_6e74_736d_6170);
    let r = (n as f64 / std::f64::consts::TAU).max(0.5);
    (0..n)
        .map(|i| {
            let a = std::f64::consts::TAU * i as f64 / n as f64;
            let mut jitter = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            (r * a.cos() + 0.05 * jitter(), r * a.sin() + 0.05 * jitter())
        })
        .collect()
}

/// Fruchterman–Reingold with ideal distance 1.
fn relax(p: &mut [(f64, f64)], edges: &[(usize, usize)]) {
    let n = p.len();
    if n < 2 {
        return;
    }
    let rounds = rounds(n);
    let hot = (n as f64).sqrt() * 0.5;
    let mut disp = vec![(0.0f64, 0.0f64); n];
    for round in 0..rounds {
        let t = hot * (1.0 - round as f64 / rounds as f64) + 0.01;
        disp.fill((0.0, 0.0));
        for i in 0..n {
            for j in (i + 1)..n {
                let (dx, dy) = (p[i].0 - p[j].0, p[i].1 - p[j].1);
                let d2 = (dx * dx + dy * dy).max(1e-4);
                // Repulsion k²/d along the unit vector: (dx, dy) / d².
                let (fx, fy) = (dx / d2, dy / d2);
                disp[i].0 += fx;
                disp[i].1 += fy;
                disp[j].0 -= fx;
                disp[j].1 -= fy;
            }
        }
        for &(a, b) in edges {
            let (dx, dy) = (p[a].0 - p[b].0, p[a].1 - p[b].1);
            let d = (dx * dx + dy * dy).sqrt().max(1e-2);
            // Attraction d²/k along the unit vector: (dx, dy) · d.
            let (fx, fy) = (dx * d, dy * d);
            disp[a].0 -= fx;
            disp[a].1 -= fy;
            disp[b].0 += fx;
            disp[b].1 += fy;
        }
        for (q, d) in p.iter_mut().zip(&disp) {
            // A weak pull to the origin keeps separate components in view.
            let (dx, dy) = (d.0 - 0.02 * q.0, d.1 - 0.02 * q.1);
            let len = (dx * dx + dy * dy).sqrt();
            if len > 0.0 {
                let step = len.min(t) / len;
                q.0 += dx * step;
                q.1 += dy * step;
            }
        }
    }
}

/// Rotate about the centroid so the principal axis is horizontal, node 0 on the left.
fn turn(p: &mut [(f64, f64)]) {
    let n = p.len() as f64;
    if p.len() < 2 {
        return;
    }
    let (cx, cy) = p
        .iter()
        .fold((0.0, 0.0), |(x, y), q| (x + q.0 / n, y + q.1 / n));
    let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
    for q in p.iter() {
        let (x, y) = (q.0 - cx, q.1 - cy);
        sxx += x * x;
        syy += y * y;
        sxy += x * y;
    }
    let angle = 0.5 * (2.0 * sxy).atan2(sxx - syy);
    let (s, c) = (-angle).sin_cos();
    for q in p.iter_mut() {
        let (x, y) = (q.0 - cx, q.1 - cy);
        *q = (x * c - y * s, x * s + y * c);
    }
    if p[0].0 > 0.0 {
        for q in p.iter_mut() {
            q.0 = -q.0;
        }
    }
}

/// Push apart pairs closer than 0.8 (a few rounds; [`normalise`] guarantees the rest).
fn separate(p: &mut [(f64, f64)]) {
    const NEAR: f64 = 0.8;
    let n = p.len();
    for _ in 0..50 {
        let mut moved = false;
        for i in 0..n {
            for j in (i + 1)..n {
                let (dx, dy) = (p[j].0 - p[i].0, p[j].1 - p[i].1);
                let d = (dx * dx + dy * dy).sqrt();
                if d >= NEAR {
                    continue;
                }
                moved = true;
                // Coincident nodes part along a direction fixed by their indices.
                let (ux, uy) = if d > 1e-9 {
                    (dx / d, dy / d)
                } else {
                    let a = (i * 7 + j * 13) as f64;
                    (a.cos(), a.sin())
                };
                let push = (NEAR - d) / 2.0;
                p[i].0 -= ux * push;
                p[i].1 -= uy * push;
                p[j].0 += ux * push;
                p[j].1 += uy * push;
            }
        }
        if !moved {
            break;
        }
    }
}

/// Scale so the closest pair is exactly 1 apart, and move the top-left corner to (0, 0).
fn normalise(p: &mut [(f64, f64)]) {
    let mut closest = f64::INFINITY;
    for i in 0..p.len() {
        for j in (i + 1)..p.len() {
            let (dx, dy) = (p[j].0 - p[i].0, p[j].1 - p[i].1);
            closest = closest.min((dx * dx + dy * dy).sqrt());
        }
    }
    let scale = if closest.is_finite() && closest > 1e-9 {
        1.0 / closest
    } else {
        1.0
    };
    let min_x = p.iter().map(|q| q.0).fold(f64::INFINITY, f64::min);
    let min_y = p.iter().map(|q| q.1).fold(f64::INFINITY, f64::min);
    for q in p.iter_mut() {
        *q = ((q.0 - min_x) * scale, (q.1 - min_y) * scale);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closest(p: &[(f64, f64)]) -> f64 {
        let mut c = f64::INFINITY;
        for i in 0..p.len() {
            for j in (i + 1)..p.len() {
                c = c.min(((p[j].0 - p[i].0).powi(2) + (p[j].1 - p[i].1).powi(2)).sqrt());
            }
        }
        c
    }

    /// A named graph: nodes and edges.
    type Graph = (&'static str, usize, Vec<(usize, usize)>);

    fn graphs() -> Vec<Graph> {
        let line = (0..4).map(|i| (i, i + 1)).collect();
        let ring = (0..12).map(|i| (i, (i + 1) % 12)).collect();
        let grid = (0..25)
            .flat_map(|i| {
                let mut e = Vec::new();
                if i % 5 < 4 {
                    e.push((i, i + 1));
                }
                if i < 20 {
                    e.push((i, i + 5));
                }
                e
            })
            .collect();
        let star = (1..20).map(|i| (0, i)).collect();
        let mut rng = SplitMix64::new(3);
        let random = (0..80)
            .map(|_| {
                (
                    (rng.next_u64() % 50) as usize,
                    (rng.next_u64() % 50) as usize,
                )
            })
            .collect();
        vec![
            ("line of 5", 5, line),
            ("ring of 12", 12, ring),
            ("5x5 grid", 25, grid),
            ("star of 20", 20, star),
            ("random 50", 50, random),
            ("no links", 7, Vec::new()),
            ("two nodes", 2, vec![(0, 1)]),
            ("one node", 1, Vec::new()),
        ]
    }

    #[test]
    fn no_two_nodes_are_closer_than_one_and_the_same_graph_lands_the_same() {
        for (name, n, edges) in graphs() {
            let p = layout(n, &edges);
            assert_eq!(p.len(), n, "{name}");
            assert!(
                p.iter().all(|q| q.0.is_finite() && q.1.is_finite()),
                "{name}"
            );
            assert!(p.iter().all(|q| q.0 >= 0.0 && q.1 >= 0.0), "{name}: {p:?}");
            if n > 1 {
                let c = closest(&p);
                assert!(c >= 1.0 - 1e-9, "{name}: closest pair {c}");
            }
            assert_eq!(p, layout(n, &edges), "{name}: deterministic");
        }
    }

    #[test]
    fn a_line_is_drawn_left_to_right_and_not_blown_up() {
        let p = layout(5, &[(0, 1), (1, 2), (2, 3), (3, 4)]);
        let width = p.iter().map(|q| q.0).fold(0.0, f64::max);
        let height = p.iter().map(|q| q.1).fold(0.0, f64::max);
        assert!(width > 3.0 * height.max(0.1), "{p:?}");
        assert!(width < 8.0, "links about one spacing long: {p:?}");
        let xs: Vec<f64> = p.iter().map(|q| q.0).collect();
        assert!(xs.windows(2).all(|w| w[0] < w[1]), "in order: {xs:?}");
    }

    #[test]
    fn bad_edges_are_ignored() {
        let p = layout(3, &[(0, 9), (1, 1), (0, 1)]);
        assert_eq!(p.len(), 3);
        assert!(closest(&p) >= 1.0 - 1e-9);
    }
}

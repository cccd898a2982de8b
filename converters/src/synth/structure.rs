//! What tells the generated classes apart: structure, never colour. Each class draws one of ten
//! structures (stripes of three orientations, a checkerboard, a dot lattice, concentric rings, a
//! disc, a square, a triangle, a cross); colours, brightness, contrast polarity, position, scale,
//! rotation and phase are drawn at random for every image, the same way for every class. A
//! model can only tell the classes apart by their shapes and layouts, which is what
//! self-supervised pretraining has to learn (a random backbone mostly sees the colours).

use pipeline::rng::{Rng as _, Xoshiro};
use std::f64::consts::PI;

/// The ten structures; class `k` draws `STRUCTURES[k % 10]` (classes past ten repeat them at
/// another scale band, see [`Scene::draw`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Structure {
    HorizontalStripes,
    VerticalStripes,
    DiagonalStripes,
    Checkerboard,
    Dots,
    Rings,
    Disc,
    Square,
    Triangle,
    Cross,
}

pub const STRUCTURES: [Structure; 10] = [
    Structure::HorizontalStripes,
    Structure::VerticalStripes,
    Structure::DiagonalStripes,
    Structure::Checkerboard,
    Structure::Dots,
    Structure::Rings,
    Structure::Disc,
    Structure::Square,
    Structure::Triangle,
    Structure::Cross,
];

/// One image's drawn structure: where the foreground colour covers the background.
#[derive(Debug, Clone)]
pub struct Scene {
    pub structure: Structure,
    /// Rotation of the pattern's axes (radians): `cos`, `sin`.
    cos: f64,
    sin: f64,
    /// Centre (pixels).
    cx: f64,
    cy: f64,
    /// Period of a texture or radius of a shape (pixels).
    scale: f64,
    /// Phase (fraction of a period) and duty (fraction covered) of a texture.
    phase: f64,
    duty: f64,
    /// Width of the soft edge (pixels).
    edge: f64,
}

impl Scene {
    /// Draws the structure of `class` on a `w` x `h` image: rotation within ±12° for the
    /// oriented stripes (either diagonal for the diagonal ones, so that a horizontal flip keeps
    /// the class) and free for the rest, scale within a band of the shorter side, position
    /// within the central half, random phase and duty.
    pub fn draw(class: usize, w: usize, h: usize, rng: &mut Xoshiro) -> Self {
        let structure = STRUCTURES[class % STRUCTURES.len()];
        let band = 1.0 + 0.5 * (class / STRUCTURES.len()) as f64;
        let side = w.min(h) as f64;
        let jitter = (rng.random() - 0.5) * 24f64.to_radians();
        use Structure::*;
        let angle = match structure {
            HorizontalStripes => PI / 2.0 + jitter,
            VerticalStripes => jitter,
            DiagonalStripes => {
                if rng.random() < 0.5 {
                    PI / 4.0 + jitter
                } else {
                    -PI / 4.0 + jitter
                }
            }
            _ => rng.random() * 2.0 * PI,
        };
        let textured = matches!(
            structure,
            HorizontalStripes | VerticalStripes | DiagonalStripes | Checkerboard | Dots | Rings
        );
        let scale = if textured {
            side * (0.14 + 0.1 * rng.random()) * band
        } else {
            side * (0.2 + 0.12 * rng.random()) / band
        };
        Self {
            structure,
            cos: angle.cos(),
            sin: angle.sin(),
            cx: w as f64 * (0.3 + 0.4 * rng.random()),
            cy: h as f64 * (0.3 + 0.4 * rng.random()),
            scale,
            phase: rng.random(),
            duty: 0.35 + 0.3 * rng.random(),
            edge: 1.0 + side / 200.0,
        }
    }

    /// How much of pixel (`x`, `y`) the foreground covers, in [0, 1] (soft edges).
    pub fn coverage(&self, x: f64, y: f64) -> f64 {
        let (dx, dy) = (x - self.cx, y - self.cy);
        // the pattern's own axes
        let u = dx * self.cos + dy * self.sin;
        let v = -dx * self.sin + dy * self.cos;
        let p = self.scale;
        let soft = |d: f64| (0.5 + d / self.edge).clamp(0.0, 1.0);
        // distance (pixels) inside a band of width duty * p along one axis, periodic
        let band = |t: f64| {
            let f = (t / p + self.phase).rem_euclid(1.0);
            (self.duty * 0.5 - (f - 0.5).abs()) * p
        };
        use Structure::*;
        match self.structure {
            HorizontalStripes | VerticalStripes | DiagonalStripes => soft(band(u)),
            Checkerboard => {
                let (a, b) = (band(u), band(v));
                // inside exactly one of the two bands of each cell: the XOR of two stripe sets
                soft(-(a * b).signum() * a.abs().min(b.abs()))
            }
            Dots => {
                let fu = (u / p + self.phase).rem_euclid(1.0) - 0.5;
                let fv = (v / p + self.phase).rem_euclid(1.0) - 0.5;
                soft((0.3 - (fu * fu + fv * fv).sqrt()) * p)
            }
            Rings => soft(band((dx * dx + dy * dy).sqrt())),
            Disc => soft(p - (dx * dx + dy * dy).sqrt()),
            Square => soft(0.85 * p - u.abs().max(v.abs())),
            Triangle => {
                // equilateral, inscribed circle of radius p / 2
                let d = (0..3)
                    .map(|i| {
                        let a = i as f64 * 2.0 * PI / 3.0;
                        p / 2.0 - (u * a.cos() + v * a.sin())
                    })
                    .fold(f64::INFINITY, f64::min);
                soft(d)
            }
            Cross => {
                let t = 0.3 * p;
                let arm = |a: f64, b: f64| (t - a.abs()).min(p - b.abs());
                soft(arm(u, v).max(arm(v, u)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::synth_pixels;
    use super::*;

    /// Every structure shows: its foreground covers a fair share of the image, not none or all.
    #[test]
    fn every_structure_covers_part_of_the_image() {
        let mut rng = Xoshiro::new(5);
        let (w, h) = (200usize, 160usize);
        for class in 0..STRUCTURES.len() {
            for _ in 0..8 {
                let scene = Scene::draw(class, w, h, &mut rng);
                let covered: f64 = (0..h)
                    .flat_map(|y| (0..w).map(move |x| (x, y)))
                    .map(|(x, y)| scene.coverage(x as f64, y as f64))
                    .sum::<f64>()
                    / (w * h) as f64;
                assert!(
                    (0.02..0.9).contains(&covered),
                    "{:?} covers {covered}",
                    scene.structure
                );
            }
        }
    }

    /// Colour is no shortcut: the classes' mean colours differ by less than 0.3 of how much
    /// the images of one class differ.
    #[test]
    fn the_classes_do_not_differ_in_colour() {
        let mut rng = Xoshiro::new(11);
        let (w, h, n) = (48usize, 40usize, 60usize);
        let mut class_means = Vec::new();
        let mut within = 0.0;
        for class in 0..STRUCTURES.len() {
            let means: Vec<[f64; 3]> = (0..n)
                .map(|_| {
                    let px = synth_pixels(w, h, class, &mut rng);
                    let mut m = [0.0; 3];
                    for p in px.chunks(3) {
                        for c in 0..3 {
                            m[c] += p[c] as f64 / (w * h) as f64;
                        }
                    }
                    m
                })
                .collect();
            let mean: [f64; 3] =
                [0, 1, 2].map(|c| means.iter().map(|m| m[c]).sum::<f64>() / n as f64);
            within += means
                .iter()
                .map(|m| (0..3).map(|c| (m[c] - mean[c]).powi(2)).sum::<f64>())
                .sum::<f64>()
                / n as f64;
            class_means.push(mean);
        }
        let within_sd = (within / STRUCTURES.len() as f64).sqrt();
        let k = class_means.len() as f64;
        let grand: [f64; 3] = [0, 1, 2].map(|c| class_means.iter().map(|m| m[c]).sum::<f64>() / k);
        let between_sd = (class_means
            .iter()
            .map(|m| (0..3).map(|c| (m[c] - grand[c]).powi(2)).sum::<f64>())
            .sum::<f64>()
            / k)
            .sqrt();
        // with 60 images a class, sampling alone gives about within_sd / sqrt(60) = 0.13 of it
        assert!(
            between_sd < 0.3 * within_sd,
            "class means spread {between_sd:.1}, images of a class {within_sd:.1}"
        );
    }
}

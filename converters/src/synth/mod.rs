//! A synthetic ImageNet-like tree: synset folders of JPEGs with ImageNet's size and byte
//! statistics whose classes differ only by structure ([`Structure`]: stripes, lattices, rings
//! and shapes, under random colours, lightness, position, scale and rotation), a val split (class folders, or flat with `LOC_val_solution.csv` and the
//! devkit's ground truth + synset list), and optionally every kind of bad file ImageNet and
//! real-world trees contain. Deterministic for a seed. Used by tests, benchmarks and the demo.

use anyhow::{Context, Result};
use pipeline::rng::{Rng as _, Xoshiro};
use std::fmt::Write as _;
use std::path::Path;
use turbojpeg::{Image, PixelFormat, Subsamp};

mod structure;
pub use structure::{STRUCTURES, Scene, Structure};

/// Bumped whenever the generated pixels change.
pub const SYNTH_VERSION: u32 = 3;

/// How `val/` is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValLayout {
    /// `val/<synset>/*.JPEG`.
    Folders,
    /// `val/ILSVRC2012_val_%08d.JPEG` + `LOC_val_solution.csv` + devkit files.
    Flat,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthSpec {
    pub classes: usize,
    pub train_per_class: usize,
    pub val_per_class: usize,
    /// Mean image size; sizes vary ±30 % around it.
    pub mean_width: u32,
    pub mean_height: u32,
    pub quality: u8,
    pub val_layout: ValLayout,
    /// Add one of each bad or odd file to `train/` (see [`BAD_FILES`]).
    pub bad_files: bool,
    /// Also give each class a colour of its own (its background and foreground are shifted
    /// towards it): a cue a randomly initialised backbone reads, for tests of a probe's
    /// mechanics. Off by default, where only the structure tells the classes apart.
    pub class_tint: bool,
    pub seed: u64,
}

impl Default for SynthSpec {
    /// ImageNet-like: ~400x350, ~110 KB per image.
    fn default() -> Self {
        Self {
            classes: 10,
            train_per_class: 20,
            val_per_class: 5,
            mean_width: 400,
            mean_height: 350,
            quality: 90,
            val_layout: ValLayout::Folders,
            bad_files: false,
            class_tint: false,
            seed: 0,
        }
    }
}

/// The odd files `bad_files` adds to the first class of train, with what a converter should
/// make of them: `skip:<reason>`, `convert:<kind>` or `ignore`.
pub const BAD_FILES: [(&str, &str); 8] = [
    ("zero_byte.JPEG", "skip:empty file"),
    ("truncated.JPEG", "skip:truncated or corrupt"),
    ("not_an_image.JPEG", "skip:not an image"),
    ("dangling_link.JPEG", "skip:unreadable"),
    ("cmyk.JPEG", "convert:cmyk"),
    ("grayscale.JPEG", "convert:grayscale"),
    ("png_in_disguise.JPEG", "convert:png"),
    ("notes.txt", "ignore"),
];

/// What was generated.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SynthSummary {
    pub classes: Vec<String>,
    pub images: usize,
    pub bytes: u64,
}

/// Synset-like class names.
pub fn class_names(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("n{:08}", 1_440_764 + i * 7_919))
        .collect()
}

/// A colour of lightness `l` (0–255) with a random tint of up to ±`tint` per channel.
fn tinted(l: f64, tint: f64, rng: &mut Xoshiro) -> [f64; 3] {
    [0, 1, 2].map(|_| l + (rng.random() * 2.0 - 1.0) * tint)
}

/// RGB pixels of one image of `class`: the class's structure ([`Scene`]) in one random colour
/// on another (random lightness, at least 70 apart in either order, each with a random tint of
/// up to ±40 per channel), under a random illumination gradient, with a few soft coloured blobs
/// of clutter and fine noise, which compress about as badly as ImageNet photographs (~110 KB
/// at 400x350, quality 90). Nothing but the structure depends on the class.
///
/// Why tinted rather than fully random colours: with fully random colours, colour is the
/// strongest cue that two crops come from one image, and a tiny ViT pretrained for a minute
/// learns colour instead of shape; with tints it learns the structures (both measured in the
/// README, "The main job").
pub fn synth_pixels(w: usize, h: usize, class: usize, rng: &mut Xoshiro) -> Vec<u8> {
    draw_pixels(w, h, class, false, rng)
}

/// [`synth_pixels`], with the class's own colour added when `class_tint` (see
/// [`SynthSpec::class_tint`]).
fn draw_pixels(w: usize, h: usize, class: usize, class_tint: bool, rng: &mut Xoshiro) -> Vec<u8> {
    let scene = Scene::draw(class, w, h, rng);
    // background and foreground lightness at least 70 apart, either way round
    let l_bg = rng.random() * 255.0;
    let l_fg = loop {
        let l = rng.random() * 255.0;
        if (l - l_bg).abs() >= 70.0 {
            break l;
        }
    };
    let (mut bg, mut fg) = (tinted(l_bg, 40.0, rng), tinted(l_fg, 40.0, rng));
    if class_tint {
        let tint = [(class * 67) % 256, (class * 141) % 256, (class * 29) % 256];
        for ch in 0..3 {
            bg[ch] = 0.5 * bg[ch] + 0.5 * tint[ch] as f64;
            fg[ch] = 0.5 * fg[ch] + 0.5 * tint[ch] as f64;
        }
    }
    // illumination: gain from `lo` to `hi` along a random direction
    let (lo, hi) = (0.6 + 0.3 * rng.random(), 0.95 + 0.3 * rng.random());
    let dir = rng.random() * 2.0 * std::f64::consts::PI;
    let (gx, gy) = (dir.cos() / w as f64, dir.sin() / h as f64);
    let blobs: Vec<(f64, f64, f64, [f64; 3])> = (0..2)
        .map(|_| {
            let c = [
                rng.random() * 120.0 - 60.0,
                rng.random() * 120.0 - 60.0,
                rng.random() * 120.0 - 60.0,
            ];
            (
                rng.random() * w as f64,
                rng.random() * h as f64,
                20.0 + rng.random() * w as f64 / 4.0,
                c,
            )
        })
        .collect();
    let mut px = vec![0u8; w * h * 3];
    let mut noise = rng.next_u64();
    for y in 0..h {
        for x in 0..w {
            let (xf, yf) = (x as f64, y as f64);
            let m = scene.coverage(xf, yf);
            let t = 0.5 + (xf - w as f64 / 2.0) * gx + (yf - h as f64 / 2.0) * gy;
            let gain = lo + (hi - lo) * t.clamp(0.0, 1.0);
            let mut v = [0f64; 3];
            for (ch, vv) in v.iter_mut().enumerate() {
                *vv = (bg[ch] + (fg[ch] - bg[ch]) * m) * gain;
            }
            for (bx, by, r, c) in &blobs {
                let d2 = ((xf - bx).powi(2) + (yf - by).powi(2)) / (r * r);
                if d2 < 9.0 {
                    let k = (-d2).exp();
                    for ch in 0..3 {
                        v[ch] += c[ch] * k;
                    }
                }
            }
            noise ^= noise << 13;
            noise ^= noise >> 7;
            noise ^= noise << 17;
            let luma = (noise & 0x3F) as f64 - 32.0;
            for ch in 0..3 {
                let chroma = ((noise >> (8 + 8 * ch)) & 0x1F) as f64 - 16.0;
                px[(y * w + x) * 3 + ch] =
                    (v[ch] + luma * 2.8 + chroma * 1.8).clamp(0.0, 255.0) as u8;
            }
        }
    }
    px
}

fn encode(
    px: &[u8],
    w: usize,
    h: usize,
    format: PixelFormat,
    quality: u8,
    sub: Subsamp,
) -> Result<Vec<u8>> {
    let image = Image {
        pixels: px,
        width: w,
        pitch: w * format.size(),
        height: h,
        format,
    };
    Ok(turbojpeg::compress(image, quality as i32, sub)?.to_vec())
}

/// One synthetic JPEG of about the spec's mean size.
pub fn synth_jpeg(spec: &SynthSpec, class: usize, rng: &mut Xoshiro) -> Result<Vec<u8>> {
    let w = (spec.mean_width as f64 * (0.7 + 0.6 * rng.random())) as usize;
    let h = (spec.mean_height as f64 * (0.7 + 0.6 * rng.random())) as usize;
    let px = draw_pixels(w.max(8), h.max(8), class, spec.class_tint, rng);
    encode(
        &px,
        w.max(8),
        h.max(8),
        PixelFormat::RGB,
        spec.quality,
        Subsamp::Sub2x2,
    )
}

fn write(path: &Path, bytes: &[u8], summary: &mut SynthSummary) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    summary.images += 1;
    summary.bytes += bytes.len() as u64;
    Ok(())
}

/// `root/train` of a tree made by [`generate`], made only when `root` does not already hold
/// the tree of this exact spec (benchmarks reuse their trees across runs).
pub fn generate_cached(root: &Path, spec: &SynthSpec) -> Result<std::path::PathBuf> {
    let stamp = root.join(".synth.json");
    // The generator's own version is part of the key: a changed generator makes a new tree.
    let text = format!("{SYNTH_VERSION} {spec:?}");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(text.as_str()) {
        let _ = std::fs::remove_dir_all(root);
        let n = spec.classes * (spec.train_per_class + spec.val_per_class);
        eprintln!(
            "generating {n} JPEGs of about {} x {} pixels in {} ...",
            spec.mean_width,
            spec.mean_height,
            root.display()
        );
        generate(root, spec)?;
        std::fs::write(&stamp, text)?;
    }
    Ok(root.join("train"))
}

/// Writes the tree under `root` (which should be empty or absent).
pub fn generate(root: &Path, spec: &SynthSpec) -> Result<SynthSummary> {
    let classes = class_names(spec.classes);
    let mut rng = Xoshiro::new(spec.seed);
    let mut summary = SynthSummary {
        classes: classes.clone(),
        ..Default::default()
    };
    for (c, name) in classes.iter().enumerate() {
        let dir = root.join("train").join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for i in 0..spec.train_per_class {
            let bytes = synth_jpeg(spec, c, &mut rng)?;
            write(
                &dir.join(format!("{name}_{}.JPEG", 10_000 + i * 13)),
                &bytes,
                &mut summary,
            )?;
        }
    }
    let val = root.join("val");
    std::fs::create_dir_all(&val)?;
    let mut csv = String::from("ImageId,PredictionString\n");
    let mut ground_truth = String::new();
    // The devkit numbers synsets in its own ILSVRC2012_ID order, not sorted order.
    let ilsvrc_order: Vec<usize> = (0..spec.classes)
        .map(|i| (i * 7 + 3) % spec.classes)
        .collect();
    let mut n = 0;
    for i in 0..spec.val_per_class {
        for (c, name) in classes.iter().enumerate() {
            n += 1;
            let bytes = synth_jpeg(spec, c, &mut rng)?;
            let file = format!("ILSVRC2012_val_{n:08}.JPEG");
            match spec.val_layout {
                ValLayout::Folders => {
                    std::fs::create_dir_all(val.join(name))?;
                    write(&val.join(name).join(&file), &bytes, &mut summary)?;
                }
                ValLayout::Flat => {
                    write(&val.join(&file), &bytes, &mut summary)?;
                    writeln!(
                        csv,
                        "ILSVRC2012_val_{n:08},{name} 10 20 110 120 {name} 5 5 50 60"
                    )?;
                    let id = ilsvrc_order.iter().position(|&k| k == c).unwrap() + 1;
                    writeln!(ground_truth, "{id}")?;
                }
            }
            let _ = i;
        }
    }
    if spec.val_layout == ValLayout::Flat {
        std::fs::write(root.join("LOC_val_solution.csv"), csv)?;
        std::fs::write(
            root.join("ILSVRC2012_validation_ground_truth.txt"),
            ground_truth,
        )?;
        let synsets: String = ilsvrc_order
            .iter()
            .map(|&k| format!("{}\n", classes[k]))
            .collect();
        std::fs::write(root.join("ILSVRC2012_synsets.txt"), synsets)?;
    }
    if spec.bad_files {
        write_bad_files(&root.join("train").join(&classes[0]), spec, &mut rng)?;
    }
    Ok(summary)
}

fn write_bad_files(dir: &Path, spec: &SynthSpec, rng: &mut Xoshiro) -> Result<()> {
    let (w, h) = (96usize, 72usize);
    let rgb = synth_pixels(w, h, 0, rng);
    let good = encode(&rgb, w, h, PixelFormat::RGB, spec.quality, Subsamp::Sub2x2)?;
    std::fs::write(dir.join("zero_byte.JPEG"), b"")?;
    std::fs::write(dir.join("truncated.JPEG"), &good[..good.len() * 3 / 5])?;
    std::fs::write(
        dir.join("not_an_image.JPEG"),
        b"<html>this is not a JPEG</html>\n",
    )?;
    let link = dir.join("dangling_link.JPEG");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(dir.join("no-such-target.JPEG"), &link)?;
    let cmyk: Vec<u8> = rgb
        .chunks(3)
        .flat_map(|p| [255 - p[0], 255 - p[1], 255 - p[2], 0])
        .collect();
    std::fs::write(
        dir.join("cmyk.JPEG"),
        encode(&cmyk, w, h, PixelFormat::CMYK, 95, Subsamp::None)?,
    )?;
    let gray: Vec<u8> = rgb.chunks(3).map(|p| p[1]).collect();
    std::fs::write(
        dir.join("grayscale.JPEG"),
        encode(&gray, w, h, PixelFormat::GRAY, 95, Subsamp::Gray)?,
    )?;
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        &rgb,
        w as u32,
        h as u32,
        image::ExtendedColorType::Rgb8,
    )?;
    std::fs::write(dir.join("png_in_disguise.JPEG"), png)?;
    std::fs::write(dir.join("notes.txt"), b"not an image\n")?;
    Ok(())
}

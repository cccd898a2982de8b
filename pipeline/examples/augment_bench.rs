//! Single-thread augmentation timing and an output fingerprint (to check that a change keeps
//! every output byte).
//!
//! `cargo run --release -p pipeline --example augment_bench -- DIR [IMAGES] [REPS] [PRESET]`
//! decodes the first IMAGES JPEGs found under DIR, runs PRESET (default `dinov2`) on each image
//! REPS times with the loader's per-sample streams, and prints the per-image decode time, the
//! per-image augment time and an xxh3 hash of every output byte. With a fifth argument `ops`
//! it then times the single operations on a 224 crop.

use pipeline::decode::Decoder;
use pipeline::presets::Preset;
use pipeline::rng::Xoshiro;
use pipeline::transforms::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn jpegs(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("readable directory")
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            jpegs(&p, out);
        } else if p
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("jpeg") || e.eq_ignore_ascii_case("jpg"))
        {
            out.push(p);
        }
    }
}

fn time(name: &str, reps: usize, mut f: impl FnMut()) {
    f();
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / reps as f64;
    println!("  {name:<28} {us:9.1} us");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(
        args.get(1)
            .expect("usage: augment_bench DIR [IMAGES] [REPS]"),
    );
    let n: usize = args.get(2).map_or(16, |s| s.parse().unwrap());
    let reps: usize = args.get(3).map_or(4, |s| s.parse().unwrap());
    let preset = Preset::by_name(args.get(4).map_or("dinov2", |s| s.as_str())).unwrap();
    let mut files = Vec::new();
    jpegs(&dir, &mut files);
    files.truncate(n);
    let mut decoder = Decoder::new().unwrap();
    let bytes: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let images: Vec<RgbImage> = bytes.iter().map(|b| decoder.decode(b).unwrap()).collect();
    // Decode time (one decoder, as a loader worker).
    let t = Instant::now();
    for _ in 0..reps {
        for b in &bytes {
            std::hint::black_box(decoder.decode(b).unwrap());
        }
    }
    let decode_ms = t.elapsed().as_secs_f64() * 1e3 / (reps * bytes.len()) as f64;
    let groups = preset.groups();
    let sizes: Vec<usize> = groups
        .iter()
        .flat_map(|g| std::iter::repeat_n(g.crop_bytes(), g.count))
        .collect();
    let mut bufs: Vec<Vec<u8>> = sizes.iter().map(|&s| vec![0u8; s]).collect();
    let mut resizer = Resizer::new();
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let t = Instant::now();
    for rep in 0..reps {
        for (i, img) in images.iter().enumerate() {
            let mut rng = Xoshiro::stream(0, &[rep as u64, i as u64]);
            let mut outs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
            preset.apply(img, &mut rng, &mut resizer, &mut outs);
            for b in &bufs {
                hasher.update(b);
            }
        }
    }
    let ms = t.elapsed().as_secs_f64() * 1e3 / (reps * images.len()) as f64;
    println!(
        "{} images x {reps}: decode {decode_ms:.3} ms/image, augment {ms:.3} ms/image, hash {:016x}",
        images.len(),
        hasher.digest()
    );
    if args.get(5).is_some_and(|s| s == "ops") {
        let img = &images[0];
        let side = img.width.min(img.height) - 20;
        let b = CropBox {
            top: 10,
            left: 10,
            height: side,
            width: side,
        };
        let crop = resized_crop(img, b, 224, 224, Interpolation::Bicubic, &mut resizer);
        let small = CropBox {
            top: 10,
            left: 10,
            height: 120,
            width: 120,
        };
        let r = 200;
        println!("ops on a 224 crop:");
        time("resized_crop ~230->224", r, || {
            std::hint::black_box(resized_crop(
                img,
                b,
                224,
                224,
                Interpolation::Bicubic,
                &mut resizer,
            ));
        });
        time("resized_crop 120->98", r, || {
            std::hint::black_box(resized_crop(
                img,
                small,
                98,
                98,
                Interpolation::Bicubic,
                &mut resizer,
            ));
        });
        let mut c = crop.clone();
        time("hflip", r, || hflip(&mut c));
        time("brightness 1.2", r, || {
            c.data.copy_from_slice(&crop.data);
            adjust_brightness(&mut c, 1.2)
        });
        time("contrast 0.8", r, || {
            c.data.copy_from_slice(&crop.data);
            adjust_contrast(&mut c, 0.8)
        });
        time("saturation 1.1", r, || {
            c.data.copy_from_slice(&crop.data);
            adjust_saturation(&mut c, 1.1)
        });
        time("hue 0.05", r, || {
            c.data.copy_from_slice(&crop.data);
            adjust_hue(&mut c, 0.05)
        });
        time("grayscale", r, || {
            c.data.copy_from_slice(&crop.data);
            grayscale(&mut c)
        });
        time("blur sigma 1.0", r, || {
            c.data.copy_from_slice(&crop.data);
            gaussian_blur(&mut c, 9, 1.0)
        });
        time("solarize", r, || {
            c.data.copy_from_slice(&crop.data);
            solarize(&mut c, 128)
        });
    }
}

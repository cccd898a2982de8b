//! The parsers under test: for each, its valid seed files (made at start by the real writers
//! where the product has one) and a runner that feeds one input through the product's own
//! reading code, file-based ones through a temporary file as in production.

use anyhow::{Context, Result, bail, ensure};
use converters::convert::{ConvertArgs, OnError, convert};
use converters::prepare::Validate;
use pipeline::decode::Decoder;
use pipeline::image_kind;
use pipeline::jpeg_entropy::{self, Verdict};
use pipeline::shards::ShardFormat;
use std::path::{Path, PathBuf};

/// Decoded images are bounded by this many pixels: the harness refuses larger headers
/// itself (see the README's "Hostile inputs"), so that a claimed 65000x65000 JPEG does not
/// allocate 12 GB.
pub const MAX_PIXELS: usize = 1 << 22;

pub type Runner = Box<dyn FnMut(&[u8]) -> Result<()>>;

pub struct Target {
    pub name: &'static str,
    /// Share of a total `--inputs`, per mille (by speed: cheap parsers get more; a torch zip
    /// of a megabyte takes up to a second to refuse, a JPEG entropy check microseconds).
    pub weight: u64,
    /// Tokens the mutator inserts (markers, keywords, opcodes).
    pub dict: &'static [&'static [u8]],
    /// Valid inputs, made in `work` (shared by all parsers, made once).
    pub seeds: fn(&Path) -> Result<Vec<Vec<u8>>>,
    /// A runner; `work` holds what the seeds were made from, `tmp` is private scratch.
    pub runner: fn(&Path, &Path) -> Result<Runner>,
}

const JPEG_DICT: &[&[u8]] = &[
    b"\xFF\xD8",
    b"\xFF\xD9",
    b"\xFF\xDA",
    b"\xFF\xC0",
    b"\xFF\xC2",
    b"\xFF\xC4",
    b"\xFF\xDB",
    b"\xFF\xDD\x00\x04\x00\x01",
    b"\xFF\xD0",
    b"\xFF\xD7",
    b"\xFF\x00",
    b"\xFF\xFF",
    b"\xFF\xE0",
    b"\xFF\xEE\x00\x0EAdobe",
    b"\xFF\xC9",
    b"\xFF\xC3",
    b"\xFF\xC0\x00\x11\x08\xFD\xE8\xFD\xE8\x03",
];
const IMAGE_DICT: &[&[u8]] = &[
    b"IHDR",
    b"IDAT",
    b"IEND",
    b"PLTE",
    b"tRNS",
    b"acTL",
    b"fcTL",
    b"\x00\x00\xFF\xFF",
    b"GIF89a",
    b"\x21\xF9\x04",
    b"\x2C",
    b"BM",
    b"RIFF",
    b"WEBP",
    b"VP8L",
    b"VP8X",
    b"VP8 ",
    b"ANIM",
    b"ANMF",
    b"II*\x00",
    b"MM\x00*",
    b"\x01\x01\x03\x00",
    b"\xFF\xD8\xFF",
];
const PICKLE_DICT: &[&[u8]] = &[
    b"(",
    b"t",
    b"]",
    b"}",
    b")",
    b"a",
    b"e",
    b"s",
    b"u",
    b"h\x00",
    b"h\x01",
    b"q\x00",
    b"\x94",
    b"R",
    b"b",
    b"Q",
    b"\x81",
    b"\x93",
    b"0",
    b"2",
    b"\x85",
    b"\x86",
    b"\x87",
    b"(]",
    b"\x8c\x01a",
    b"X\xFF\xFF\xFF\x7F",
    b"\x8e\xFF\xFF\xFF\xFF\xFF\xFF\xFF\x7F",
    b"B\x00\x00\x00\x80",
    b"ctorch._utils\n_rebuild_tensor_v2\n",
    b"cnumpy.core.multiarray\n_reconstruct\n",
    b"ccollections\nOrderedDict\n",
    b"\x8a\x08",
    b"J\xFF\xFF\xFF\xFF",
    b"\x80\x05",
    b".",
];
const ZIP_DICT: &[&[u8]] = &[
    b"PK\x03\x04",
    b"PK\x01\x02",
    b"PK\x05\x06",
    b"PK\x06\x06",
    b"PK\x06\x07",
    b"data.pkl",
    b"\xFF\xFF\xFF\xFF",
    b"archive/data/0",
    b"(",
    b"t",
    b"h\x00",
    b"\x94",
    b"R",
];
const JSON_DICT: &[&[u8]] = &[
    b"[",
    b"{",
    b"]",
    b"}",
    b"\"a\":",
    b",",
    b"null",
    b"true",
    b"1e999",
    b"-1",
    b"1.5",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"\"\\ud800\"",
    b"\"\\u0000\"",
    b"\"",
    b"{\"kind\":\"train\",\"step\":",
    b"{\"kind\":\"eval\",\"top1\":",
    b"NaN",
    b"\n",
    b"0",
];
const YAML_DICT: &[&[u8]] = &[
    b"&a [*a, *a, *a, *a]",
    b"*a",
    b"<<: *a",
    b"- ",
    b"[",
    b"{",
    b"]",
    b"}",
    b": ",
    b"\n  ",
    b"!!binary",
    b"!!int",
    b"~",
    b"null",
    b".nan",
    b"-.inf",
    b"1e999",
    b"0x7FFFFFFFFFFFFFFF",
    b"? ",
    b"|",
    b">",
    b"---\n",
    b"...\n",
    b"\"\\x00\"",
    b"'",
    b"#",
    b"\t",
    b"%YAML 1.1\n",
    b"Global.epochs=",
    b"Model.backbone.depth=",
    b"=",
    b".",
    b"[0]",
    b"None",
];
const LMDB_DICT: &[&[u8]] = &[
    b"\xDE\xC0\xEF\xBE",
    b"\x00\x10\x00\x00",
    b"\xFF\xFF\xFF\xFF",
    b"\x01\x00",
    b"\x02\x00",
    b"\x08\x00",
    b"\x10\x00",
    b"__meta__",
];
const ARROW_DICT: &[&[u8]] = &[
    b"ARROW1",
    b"\xFF\xFF\xFF\xFF",
    b"\x00\x00\x00\x00",
    b"\x7F\xFF\xFF\xFF",
    b"\xFF\xFF\xFF\x7F",
];

pub fn all() -> Vec<Target> {
    vec![
        Target {
            name: "jpeg_entropy",
            weight: 300,
            dict: JPEG_DICT,
            seeds: jpeg_seeds,
            runner: entropy_runner,
        },
        Target {
            name: "jpeg",
            weight: 100,
            dict: JPEG_DICT,
            seeds: jpeg_seeds,
            runner: image_runner,
        },
        Target {
            name: "image",
            weight: 50,
            dict: IMAGE_DICT,
            seeds: image_seeds,
            runner: image_runner,
        },
        Target {
            name: "pickle",
            weight: 80,
            dict: PICKLE_DICT,
            seeds: pickle_seeds,
            runner: pickle_runner,
        },
        Target {
            name: "pdparams",
            weight: 10,
            dict: PICKLE_DICT,
            seeds: pdparams_seeds,
            runner: pdparams_runner,
        },
        Target {
            name: "torch_zip",
            weight: 5,
            dict: ZIP_DICT,
            seeds: torch_seeds,
            runner: torch_runner,
        },
        Target {
            name: "safetensors",
            weight: 20,
            dict: JSON_DICT,
            seeds: safetensors_seeds,
            runner: safetensors_runner,
        },
        Target {
            name: "lmdb",
            weight: 20,
            dict: LMDB_DICT,
            seeds: lmdb_seeds,
            runner: lmdb_runner,
        },
        Target {
            name: "arrow",
            weight: 30,
            dict: ARROW_DICT,
            seeds: arrow_seeds,
            runner: arrow_runner,
        },
        Target {
            name: "record",
            weight: 200,
            dict: &[b"\xFF\xFF\xFF\xFF", b"\x00"],
            seeds: record_seeds,
            runner: record_runner,
        },
        Target {
            name: "manifest",
            weight: 20,
            dict: JSON_DICT,
            seeds: manifest_seeds,
            runner: manifest_runner,
        },
        Target {
            name: "progress",
            weight: 100,
            dict: JSON_DICT,
            seeds: progress_seeds,
            runner: progress_runner,
        },
        Target {
            name: "yaml_config",
            weight: 5,
            dict: YAML_DICT,
            seeds: yaml_seeds,
            runner: yaml_runner,
        },
        Target {
            name: "overrides",
            weight: 5,
            dict: YAML_DICT,
            seeds: override_seeds,
            runner: override_runner,
        },
        Target {
            name: "state_json",
            weight: 50,
            dict: JSON_DICT,
            seeds: state_seeds,
            runner: state_runner,
        },
        Target {
            name: "metrics",
            weight: 5,
            dict: JSON_DICT,
            seeds: metrics_seeds,
            runner: metrics_runner,
        },
    ]
}

// ---- seeds ----

const FIXTURES: &[(&str, &[u8])] = &[
    (
        "baseline_420.jpg",
        include_bytes!("../../tests/fixtures/fuzz/baseline_420.jpg"),
    ),
    (
        "baseline_422.jpg",
        include_bytes!("../../tests/fixtures/fuzz/baseline_422.jpg"),
    ),
    (
        "baseline_444.jpg",
        include_bytes!("../../tests/fixtures/fuzz/baseline_444.jpg"),
    ),
    (
        "progressive.jpg",
        include_bytes!("../../tests/fixtures/fuzz/progressive.jpg"),
    ),
    (
        "optimized.jpg",
        include_bytes!("../../tests/fixtures/fuzz/optimized.jpg"),
    ),
    (
        "restart.jpg",
        include_bytes!("../../tests/fixtures/fuzz/restart.jpg"),
    ),
    (
        "restart_rows.jpg",
        include_bytes!("../../tests/fixtures/fuzz/restart_rows.jpg"),
    ),
    (
        "gray.jpg",
        include_bytes!("../../tests/fixtures/fuzz/gray.jpg"),
    ),
    (
        "cmyk.jpg",
        include_bytes!("../../tests/fixtures/fuzz/cmyk.jpg"),
    ),
    (
        "flat.pth",
        include_bytes!("../../tests/fixtures/fuzz/flat.pth"),
    ),
    (
        "nested.pth",
        include_bytes!("../../tests/fixtures/fuzz/nested.pth"),
    ),
    (
        "tiny_p2.pdparams",
        include_bytes!("../../tests/fixtures/fuzz/tiny_p2.pdparams"),
    ),
    (
        "tiny_p4.pdparams",
        include_bytes!("../../tests/fixtures/fuzz/tiny_p4.pdparams"),
    ),
    (
        "nested.pdparams",
        include_bytes!("../../tests/fixtures/fuzz/nested.pdparams"),
    ),
    (
        "passl_vit_tiny.pdparams",
        include_bytes!("../../tests/fixtures/passl_vit_tiny.pdparams"),
    ),
];

fn fixtures(ext: &str) -> Vec<Vec<u8>> {
    FIXTURES
        .iter()
        .filter(|(n, _)| n.ends_with(ext))
        .map(|(_, b)| b.to_vec())
        .collect()
}

fn pixels(w: usize, h: usize, c: usize) -> Vec<u8> {
    (0..w * h * c)
        .map(|i| ((i * 7 + i / (w * c) * 13) % 251) as u8)
        .collect()
}

fn turbo(w: usize, h: usize, sub: turbojpeg::Subsamp, q: i32) -> Result<Vec<u8>> {
    let px = pixels(w, h, 3);
    let img = turbojpeg::Image {
        pixels: px.as_slice(),
        width: w,
        pitch: w * 3,
        height: h,
        format: turbojpeg::PixelFormat::RGB,
    };
    Ok(turbojpeg::compress(img, q, sub)?.to_vec())
}

fn jpeg_seeds(_: &Path) -> Result<Vec<Vec<u8>>> {
    let mut s = fixtures(".jpg");
    s.push(turbo(64, 48, turbojpeg::Subsamp::Sub2x2, 90)?);
    s.push(turbo(17, 9, turbojpeg::Subsamp::None, 50)?);
    s.push(turbo(8, 8, turbojpeg::Subsamp::Sub2x1, 100)?);
    Ok(s)
}

fn encode(img: image::DynamicImage, f: image::ImageFormat) -> Result<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, f)
        .with_context(|| format!("encoding a {f:?} seed"))?;
    Ok(out.into_inner())
}

fn image_seeds(_: &Path) -> Result<Vec<Vec<u8>>> {
    use image::{DynamicImage as D, ImageFormat as F};
    let rgb = image::RgbImage::from_raw(24, 16, pixels(24, 16, 3)).unwrap();
    let rgba = image::RgbaImage::from_raw(12, 10, pixels(12, 10, 4)).unwrap();
    let gray = image::GrayImage::from_raw(9, 7, pixels(9, 7, 1)).unwrap();
    let gray16 = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(5, 4, |x, y| {
        image::Luma([(x * 9000 + y * 77) as u16])
    });
    Ok(vec![
        encode(D::ImageRgb8(rgb.clone()), F::Png)?,
        encode(D::ImageRgba8(rgba.clone()), F::Png)?,
        encode(D::ImageLuma8(gray.clone()), F::Png)?,
        encode(D::ImageLuma16(gray16), F::Png)?,
        encode(D::ImageRgba8(rgba.clone()), F::Gif)?,
        encode(D::ImageRgb8(rgb.clone()), F::Bmp)?,
        encode(D::ImageLuma8(gray), F::Bmp)?,
        encode(D::ImageRgba8(rgba), F::WebP)?,
        encode(D::ImageRgb8(rgb), F::WebP)?,
        // No TIFF seed: TIFF inputs are not run (see image_runner).
        turbo(16, 16, turbojpeg::Subsamp::Sub2x2, 80)?,
    ])
}

fn zip_entry(bytes: &[u8], suffix: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes))?;
    for i in 0..z.len() {
        let mut f = z.by_index(i)?;
        if f.name().ends_with(suffix) {
            let mut v = Vec::new();
            f.read_to_end(&mut v)?;
            return Ok(v);
        }
    }
    bail!("no {suffix} in a seed archive")
}

fn pickle_seeds(_: &Path) -> Result<Vec<Vec<u8>>> {
    let mut s = Vec::new();
    for t in fixtures(".pth") {
        s.push(zip_entry(&t, "data.pkl")?);
    }
    s.extend(
        FIXTURES
            .iter()
            .filter(|(n, _)| n.starts_with("tiny") || n.starts_with("nested.pd"))
            .map(|(_, b)| b.to_vec()),
    );
    Ok(s)
}

fn pdparams_seeds(_: &Path) -> Result<Vec<Vec<u8>>> {
    Ok(fixtures(".pdparams"))
}

fn torch_seeds(_: &Path) -> Result<Vec<Vec<u8>>> {
    Ok(fixtures(".pth"))
}

fn safetensors_seeds(_: &Path) -> Result<Vec<Vec<u8>>> {
    use safetensors::{Dtype, tensor::TensorView};
    let f32s: Vec<u8> = (0..12)
        .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
        .collect();
    let i64s: Vec<u8> = (0..3i64).flat_map(|i| i.to_le_bytes()).collect();
    let bools = vec![1u8, 0, 1, 1];
    let bf16 = vec![0x80u8, 0x3F, 0x00, 0x40];
    let mut out = Vec::new();
    let sets: Vec<Vec<(&str, TensorView)>> = vec![
        vec![
            (
                "backbone.w",
                TensorView::new(Dtype::F32, vec![3, 4], &f32s)?,
            ),
            (
                "backbone.step",
                TensorView::new(Dtype::I64, vec![3], &i64s)?,
            ),
        ],
        vec![
            ("mask", TensorView::new(Dtype::BOOL, vec![2, 2], &bools)?),
            ("h", TensorView::new(Dtype::BF16, vec![2], &bf16)?),
            ("scalar", TensorView::new(Dtype::F32, vec![], &f32s[..4])?),
        ],
    ];
    for set in sets {
        let mut meta = std::collections::HashMap::new();
        meta.insert("format".to_string(), "pt".to_string());
        out.push(safetensors::tensor::serialize(set, Some(meta))?);
    }
    Ok(out)
}

/// A tiny class-per-folder tree converted by the real `dinov2 convert` code into LMDB and
/// Arrow shard directories under `work` (made once; the shard seeds and manifests come from it).
fn converted(work: &Path, format: ShardFormat) -> Result<PathBuf> {
    let out = work.join(format!("shards-{}", format.extension()));
    if out.join("manifest.json").is_file() {
        return Ok(out);
    }
    let tree = work.join("tree");
    if !tree.is_dir() {
        for (c, class) in ["n01440764", "n01443537", "n01484850"].iter().enumerate() {
            let d = tree.join(class);
            std::fs::create_dir_all(&d)?;
            for i in 0..2 {
                std::fs::write(
                    d.join(format!("img{i}.JPEG")),
                    turbo(20 + 4 * c, 12 + 2 * i, turbojpeg::Subsamp::Sub2x2, 80)?,
                )?;
            }
        }
        let rgb = image::RgbImage::from_raw(10, 6, pixels(10, 6, 3)).unwrap();
        std::fs::write(
            tree.join("n01440764/odd.png"),
            encode(image::DynamicImage::ImageRgb8(rgb), image::ImageFormat::Png)?,
        )?;
    }
    let plan = converters::source::plan_folder(&tree, "train")?;
    let args = ConvertArgs {
        out: out.clone(),
        format,
        shard_size: 4,
        workers: 1,
        max_side: None,
        quality: 90,
        on_error: OnError::Skip,
        validate: Validate::Decode,
        progress: false,
    };
    convert(&plan, &args).context("converting the seed tree")?;
    Ok(out)
}

fn shard_files(dir: &Path, ext: &str) -> Result<Vec<Vec<u8>>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    ensure!(!files.is_empty(), "no .{ext} shards in {}", dir.display());
    files.iter().map(|p| Ok(std::fs::read(p)?)).collect()
}

fn lmdb_seeds(work: &Path) -> Result<Vec<Vec<u8>>> {
    shard_files(
        &converted(work, ShardFormat::Lmdb)?,
        ShardFormat::Lmdb.extension(),
    )
}

fn arrow_seeds(work: &Path) -> Result<Vec<Vec<u8>>> {
    shard_files(
        &converted(work, ShardFormat::Arrow)?,
        ShardFormat::Arrow.extension(),
    )
}

fn record_seeds(_: &Path) -> Result<Vec<Vec<u8>>> {
    let img = turbo(8, 8, turbojpeg::Subsamp::Sub2x2, 70)?;
    Ok(vec![
        pipeline::shards::record::encode("n01440764/img0.JPEG", 0, 8, 8, &img)?,
        pipeline::shards::record::encode("k", 999, 1, 1, b"")?,
    ])
}

fn manifest_seeds(work: &Path) -> Result<Vec<Vec<u8>>> {
    Ok(vec![
        std::fs::read(converted(work, ShardFormat::Lmdb)?.join("manifest.json"))?,
        std::fs::read(converted(work, ShardFormat::Arrow)?.join("manifest.json"))?,
    ])
}

/// `.progress.json` as an interrupted conversion of the seed tree leaves it: the settings
/// and sources of its manifest and its shards as finished ones.
fn progress_seeds(work: &Path) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for format in [ShardFormat::Lmdb, ShardFormat::Arrow] {
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(
            converted(work, format)?.join("manifest.json"),
        )?)?;
        let mut done = serde_json::Map::new();
        for (i, e) in m["splits"]["train"]["shards"]
            .as_array()
            .context("manifest shards")?
            .iter()
            .enumerate()
        {
            done.insert(e["file"].as_str().unwrap_or_default().to_string(), serde_json::json!({
                "split": "train", "index": i, "entry": e, "resized": 0,
                "report": [{"key": "n01440764/odd.png", "action": "converted", "reason": "png", "detail": ""}],
            }));
        }
        let p = serde_json::json!({
            "shard_format": m["shard_format"], "source_root": m["source_root"], "options": m["options"],
            "classes": m["classes"], "split_sources": {"train": m["splits"]["train"]["sources"]}, "done": done,
        });
        out.push(serde_json::to_vec(&p)?);
    }
    Ok(out)
}

const LP_YAML: &str = include_str!("../../configs/tiny_lp_cpu.yaml");
const SSL_YAML: &str = include_str!("../../configs/tiny_ssl_cpu.yaml");

fn yaml_seeds(_: &Path) -> Result<Vec<Vec<u8>>> {
    Ok([
        LP_YAML,
        SSL_YAML,
        include_str!("../../configs/digits_ssl_cpu.yaml"),
        include_str!("../../configs/dinov2_vits14_pretrain_in1k.yaml"),
        include_str!("../../configs/dinov2_vit_small_patch14_224_lp_in1k_1n8c_dp_fp16o1.yaml"),
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect())
}

fn override_seeds(_: &Path) -> Result<Vec<Vec<u8>>> {
    Ok([
        "Global.epochs=5\nOptimizer.momentum=0.8\nDataLoader.Train.dataset.root=/data/train",
        "Global.seed=7\nModel.backbone.depth=4\nGlobal.checkpoint=None",
        "train.batch_size_per_gpu=4\noptim.epochs=2\nstudent.arch=vit_small",
        "crops.local_crops_number=2\ntrain.output_dir=./runs/x",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect())
}

fn state_seeds(_: &Path) -> Result<Vec<Vec<u8>>> {
    let probe = trainer::probe::state::ProbeState {
        epochs_done: 3,
        global_step: 120,
        scaler: Some(trainer::scaler::LossScaler::passl()),
        best: Some((0.625, 2, "linear".into())),
        tensors: "epoch_3.safetensors".into(),
        classifiers: vec!["linear".into(), "blocks1_avgpoolFalse_lr0_01000".into()],
    };
    Ok(vec![
        serde_json::to_vec_pretty(&probe)?,
        serde_json::to_vec_pretty(
            &serde_json::json!({"iteration": 40, "scaler": trainer::scaler::LossScaler::passl(), "tensors": "iter_40.safetensors"}),
        )?,
        serde_json::to_vec_pretty(
            &serde_json::json!({"iteration": 0, "scaler": null, "tensors": "iter_0.safetensors"}),
        )?,
    ])
}

fn metrics_seeds(_: &Path) -> Result<Vec<Vec<u8>>> {
    Ok(vec![
        concat!(
            "{\"kind\":\"train\",\"epoch\":1,\"step\":10,\"loss\":2.3,\"lr\":0.1,\"images_per_s\":250.5}\n",
            "{\"kind\":\"train\",\"epoch\":1,\"step\":20,\"loss\":2.1,\"lr\":0.1}\n",
            "{\"kind\":\"eval\",\"epoch\":1,\"step\":20,\"top1\":0.31,\"top5\":0.8,\"loss\":2.0}\n",
            "{\"kind\":\"knn\",\"k\":20,\"top1\":0.4,\"top5\":0.9}\n",
            "{\"kind\":\"lr_grid\",\"name\":\"blocks1_lr0_1\",\"top1\":0.5,\"top5\":0.95}\n",
        )
        .as_bytes()
        .to_vec(),
        b"{\"kind\":\"train\",\"step\":1,\"loss\":9.0}\n{\"kind\":\"eval\",\"step\":1,\"top1\":0.1}\n".to_vec(),
    ])
}

// ---- runners ----

/// Writes `input` to `tmp/name` and returns the path.
fn file(tmp: &Path, name: &str, input: &[u8]) -> Result<PathBuf> {
    let p = tmp.join(name);
    std::fs::write(&p, input)?;
    Ok(p)
}

/// The product's decode path for any stored image, behind the harness's pixel bound.
fn decode_bounded(dec: &mut Decoder, input: &[u8]) -> Result<()> {
    let _ = image_kind::ImageKind::sniff(input);
    let (w, h) = image_kind::dimensions(input)?;
    if w.saturating_mul(h) > MAX_PIXELS {
        bail!("{w}x{h} is over the harness's pixel bound");
    }
    let img = dec.decode(input)?;
    ensure!(
        img.width == w && img.height == h,
        "decoded {}x{}, the header says {w}x{h}",
        img.width,
        img.height
    );
    let _ = dec.decode_at_least(input, w / 3, h / 3)?;
    Ok(())
}

fn image_runner(_: &Path, _: &Path) -> Result<Runner> {
    let mut dec = Decoder::new()?;
    Ok(Box::new(move |input| {
        // The product's own decoded-pixel limit, at the harness's bound.
        pipeline::decode::set_max_image_pixels(MAX_PIXELS as u64);
        let _ = image_kind::jpeg_structure_check(input);
        decode_bounded(&mut dec, input)
    }))
}

/// `jpeg_entropy::check`'s contract: whenever it says clean, libjpeg-turbo decodes the file
/// without an error or a warning. A breach panics (a finding, with the input saved).
fn entropy_runner(_: &Path, _: &Path) -> Result<Runner> {
    let mut scratch = Vec::new();
    let mut turbo = turbojpeg::Decompressor::new()?;
    Ok(Box::new(move |input| {
        let _ = image_kind::jpeg_structure_check(input);
        if jpeg_entropy::check(input, &mut scratch) != Verdict::Clean {
            return Ok(());
        }
        let h = turbo.read_header(input).unwrap_or_else(|e| {
            panic!("check said clean, libjpeg-turbo cannot read the header: {e}")
        });
        if h.width.saturating_mul(h.height) > MAX_PIXELS * 4 {
            bail!("clean but {}x{} is too large to verify", h.width, h.height);
        }
        let mut px = vec![0u8; h.width * h.height * 3];
        let out = turbojpeg::Image {
            pixels: px.as_mut_slice(),
            width: h.width,
            pitch: h.width * 3,
            height: h.height,
            format: turbojpeg::PixelFormat::RGB,
        };
        turbo.set_scaling_factor(turbojpeg::ScalingFactor::ONE)?;
        if let Err(e) = turbo.decompress(input, out) {
            panic!("jpeg_entropy::check said clean, libjpeg-turbo says: {e}");
        }
        Ok(())
    }))
}

fn pickle_runner(_: &Path, _: &Path) -> Result<Runner> {
    Ok(Box::new(|input| {
        let root = converters::pickle::unpickle(input)?;
        let _ = root.describe();
        for (_, v) in converters::pickle::dict_leaves(&root)? {
            let _ = converters::numpy::to_tensor(&v);
        }
        Ok(())
    }))
}

fn weights(tmp: &Path, ext: &'static str) -> Result<Runner> {
    let tmp = tmp.to_path_buf();
    Ok(Box::new(move |input| {
        let p = file(&tmp, &format!("input.{ext}"), input)?;
        converters::weights::read_weights(&p, None, None)?;
        if ext == "safetensors" {
            tch::Tensor::read_safetensors(&p)?;
        }
        Ok(())
    }))
}

fn pdparams_runner(_: &Path, tmp: &Path) -> Result<Runner> {
    weights(tmp, "pdparams")
}

fn torch_runner(_: &Path, tmp: &Path) -> Result<Runner> {
    weights(tmp, "pth")
}

fn safetensors_runner(_: &Path, tmp: &Path) -> Result<Runner> {
    weights(tmp, "safetensors")
}

fn lmdb_runner(_: &Path, tmp: &Path) -> Result<Runner> {
    let tmp = tmp.to_path_buf();
    let mut n = 0u64;
    Ok(Box::new(move |input| {
        n += 1;
        let p = file(&tmp, &format!("shard-{n}.lmdb"), input)?;
        let r = (|| {
            let s = pipeline::shards::lmdb::LmdbShard::open(&p)?;
            let _ = s.meta();
            for i in 0..s.len().min(16) {
                let _ = s.get(i);
            }
            Ok(())
        })();
        let _ = std::fs::remove_file(&p);
        r
    }))
}

fn arrow_runner(_: &Path, tmp: &Path) -> Result<Runner> {
    let tmp = tmp.to_path_buf();
    Ok(Box::new(move |input| {
        let p = file(&tmp, "shard.arrow", input)?;
        let s = pipeline::shards::arrow::ArrowShard::open(&p)?;
        for i in 0..s.len().min(16) {
            let _ = s.get(i);
        }
        Ok(())
    }))
}

fn record_runner(_: &Path, _: &Path) -> Result<Runner> {
    Ok(Box::new(|input| {
        let r = pipeline::shards::record::decode(input)?;
        let _ = image_kind::ImageKind::sniff(&r.bytes);
        Ok(())
    }))
}

/// Opens a shard directory (real shards of the seed tree) whose manifest is the input.
fn manifest_runner(work: &Path, tmp: &Path) -> Result<Runner> {
    let dirs = [ShardFormat::Lmdb, ShardFormat::Arrow].map(|f| tmp.join(f.extension()));
    for (f, d) in [ShardFormat::Lmdb, ShardFormat::Arrow]
        .into_iter()
        .zip(&dirs)
    {
        std::fs::create_dir_all(d)?;
        let src = converted(work, f)?;
        for e in std::fs::read_dir(&src)? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == f.extension()) {
                std::fs::copy(&p, d.join(p.file_name().unwrap()))?;
            }
        }
    }
    let mut n = 0usize;
    Ok(Box::new(move |input| {
        n += 1;
        // The directory whose shards the manifest's format names (the seeds match).
        let d = &dirs[usize::from(memchr_arrow(input)) ^ n.is_multiple_of(16) as usize];
        std::fs::write(d.join("manifest.json"), input)?;
        let m = pipeline::shards::manifest::Manifest::load(d)?;
        let _ = m.split("val");
        let ds = pipeline::shards::ShardedDataset::open(d, "train")?;
        for i in [0, 1, 5, usize::MAX] {
            let _ = ds.locate(i);
        }
        Ok(())
    }))
}

fn memchr_arrow(input: &[u8]) -> bool {
    input.windows(7).any(|w| w == b"\"arrow\"")
}

fn progress_runner(_: &Path, _: &Path) -> Result<Runner> {
    Ok(Box::new(converters::convert::check_progress_file))
}

fn yaml_runner(_: &Path, tmp: &Path) -> Result<Runner> {
    let tmp = tmp.to_path_buf();
    Ok(Box::new(move |input| {
        let p = file(&tmp, "config.yaml", input)?;
        let a = trainer::config::Config::load(&p, &[]).map(drop);
        let b = trainer::config::load_yaml::<trainer::ssl::config::SslConfig>(&p, &[]).map(drop);
        a.or(b)
    }))
}

fn override_runner(_: &Path, tmp: &Path) -> Result<Runner> {
    let lp = file(tmp, "lp.yaml", LP_YAML.as_bytes())?;
    let ssl = file(tmp, "ssl.yaml", SSL_YAML.as_bytes())?;
    Ok(Box::new(move |input| {
        let text = String::from_utf8_lossy(input);
        let o: Vec<String> = text.lines().map(str::to_string).collect();
        let a = trainer::config::Config::load(&lp, &o).map(drop);
        let b = trainer::config::load_yaml::<trainer::ssl::config::SslConfig>(&ssl, &o).map(drop);
        a.or(b)
    }))
}

fn state_runner(_: &Path, _: &Path) -> Result<Runner> {
    Ok(Box::new(|input| {
        let a = serde_json::from_slice::<trainer::probe::state::ProbeState>(input)
            .map(drop)
            .map_err(anyhow::Error::from);
        let b = trainer::ssl::train::check_state_file(input);
        a.or(b)
    }))
}

fn metrics_runner(_: &Path, tmp: &Path) -> Result<Runner> {
    let dir = tmp.join("run");
    std::fs::create_dir_all(&dir)?;
    Ok(Box::new(move |input| {
        std::fs::write(dir.join("metrics.jsonl"), input)?;
        trainer::summary::run_report(&dir).map(drop)
    }))
}

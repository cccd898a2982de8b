//! The parameter samplers draw from torchvision's distributions (two-sample Kolmogorov-Smirnov
//! tests at alpha = 0.001 against 20,000 draws of torchvision's own `get_params`), and the
//! decoder gives Pillow's pixels.

mod common;
use common::*;
use pipeline::rng::Xoshiro;
use pipeline::transforms::{ColorJitter, RandomResizedCrop};

const REFERENCE: &str = r#"
import json, sys, torch
from PIL import Image
from torchvision import transforms
torch.manual_seed(0)
n, W, H, s0, s1 = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
rrc = transforms.RandomResizedCrop(224, scale=(s0, s1))
img = Image.new("RGB", (W, H))
crops = [rrc.get_params(img, rrc.scale, rrc.ratio) for _ in range(n)]
cj = transforms.ColorJitter(0.4, 0.4, 0.2, 0.1)
jit = [cj.get_params(cj.brightness, cj.contrast, cj.saturation, cj.hue) for _ in range(n)]
print(json.dumps({"crops": crops, "jitter": [[int(p[0][0]), p[1], p[2], p[3], p[4]] for p in jit]}))
"#;

/// A statistic of a crop (top, left, height, width).
type Stat = fn(&[f64; 4]) -> f64;

fn ks(mut a: Vec<f64>, mut b: Vec<f64>) -> f64 {
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (mut i, mut j, mut d) = (0, 0, 0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

#[test]
fn crop_and_jitter_parameters_follow_torchvision() {
    let n = 20_000;
    let critical = 1.95 * (2.0 / n as f64).sqrt();
    for (w, h, scale) in [
        (500usize, 375usize, (0.08, 1.0)),
        (400, 350, (0.32, 1.0)),
        (400, 350, (0.05, 0.32)),
        (1000, 120, (0.08, 1.0)),
    ] {
        let stdout = run_python_with(
            REFERENCE,
            &[
                n.to_string(),
                w.to_string(),
                h.to_string(),
                scale.0.to_string(),
                scale.1.to_string(),
            ],
        );
        let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let theirs: Vec<[f64; 4]> = r["crops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let v: Vec<f64> = c
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect();
                [v[0], v[1], v[2], v[3]] // top, left, height, width
            })
            .collect();
        let rrc = RandomResizedCrop::new(224, scale);
        let mut rng = Xoshiro::new(7);
        let ours: Vec<[f64; 4]> = (0..n)
            .map(|_| {
                let b = rrc.sample(w, h, &mut rng);
                [b.top as f64, b.left as f64, b.height as f64, b.width as f64]
            })
            .collect();
        let stats: [(&str, Stat); 4] = [
            ("area", |c| c[2] * c[3]),
            ("aspect", |c| c[3] / c[2]),
            ("centre y", |c| c[0] + c[2] / 2.0),
            ("centre x", |c| c[1] + c[3] / 2.0),
        ];
        for (name, f) in stats {
            let d = ks(ours.iter().map(f).collect(), theirs.iter().map(f).collect());
            assert!(
                d < critical,
                "{w}x{h} scale {scale:?}: {name} KS distance {d:.4} >= {critical:.4}"
            );
        }
        // ColorJitter: factor distributions and the order of operations.
        let jit: Vec<Vec<f64>> = r["jitter"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                p.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect()
            })
            .collect();
        let cj = ColorJitter {
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.2,
            hue: 0.1,
        };
        let mine: Vec<_> = (0..n).map(|_| cj.sample(&mut rng)).collect();
        let pick = [
            |p: &pipeline::transforms::JitterParams| p.brightness.unwrap(),
            |p: &pipeline::transforms::JitterParams| p.contrast.unwrap(),
            |p: &pipeline::transforms::JitterParams| p.saturation.unwrap(),
            |p: &pipeline::transforms::JitterParams| p.hue.unwrap(),
        ];
        for (k, f) in pick.iter().enumerate() {
            let d = ks(
                mine.iter().map(f).collect(),
                jit.iter().map(|p| p[k + 1]).collect(),
            );
            assert!(d < critical, "jitter factor {k}: KS distance {d:.4}");
        }
        for first in 0..4 {
            let a = mine.iter().filter(|p| p.order[0] == first).count() as f64 / n as f64;
            let b = jit.iter().filter(|p| p[0] as usize == first).count() as f64 / n as f64;
            assert!(
                (a - b).abs() < 0.02 && (a - 0.25).abs() < 0.02,
                "first op {first}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn decoder_gives_pillows_pixels() {
    use converters::synth::{SynthSpec, synth_jpeg};
    use pipeline::rng::Xoshiro as SynthRng;
    let dir = scratch("decode-parity");
    let mut rng = SynthRng::new(5);
    let mut decoder = pipeline::decode::Decoder::new().unwrap();
    for k in 0..4 {
        let jpeg = synth_jpeg(
            &SynthSpec {
                mean_width: 150 + 40 * k,
                mean_height: 110,
                ..SynthSpec::default()
            },
            k as usize,
            &mut rng,
        )
        .unwrap();
        let path = dir.join(format!("{k}.jpg"));
        std::fs::write(&path, &jpeg).unwrap();
        let out = output(std::process::Command::new(python()).arg("-c").arg(
            "import sys, numpy as np; from PIL import Image; sys.stdout.buffer.write(np.asarray(Image.open(sys.argv[1]).convert('RGB')).tobytes())",
        ).arg(&path));
        assert!(out.status.success());
        let ours = decoder.decode(&jpeg).unwrap();
        assert_eq!(ours.data.len(), out.stdout.len());
        assert!(
            ours.data == out.stdout,
            "decoded pixels differ from Pillow's for image {k}"
        );
    }
}

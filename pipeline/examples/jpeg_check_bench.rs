//! Times the fast entropy check against libjpeg-turbo's 1/8-scale decode (the converter's
//! decode validation) on every JPEG under a folder, in one run:
//! `jpeg_check_bench <dir> [reps]`. Prints per-image medians and how many files each
//! accepted.

use pipeline::decode::Decoder;
use pipeline::jpeg_entropy::{Verdict, check};
use std::time::Instant;

fn files(dir: &std::path::Path, out: &mut Vec<Vec<u8>>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p
            .extension()
            .is_some_and(|x| x.eq_ignore_ascii_case("jpeg") || x.eq_ignore_ascii_case("jpg"))
        {
            out.push(std::fs::read(&p).unwrap());
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).expect("usage: jpeg_check_bench <dir> [reps]"));
    let reps: usize = args.get(2).map_or(5, |r| r.parse().unwrap());
    let mut jpegs = Vec::new();
    files(&dir, &mut jpegs);
    let mut decoder = Decoder::new().unwrap();
    let mut scratch = Vec::new();
    let (mut fast, mut slow) = (Vec::new(), Vec::new());
    let (mut clean, mut decoded) = (0, 0);
    for _ in 0..reps {
        let t = Instant::now();
        clean = jpegs
            .iter()
            .filter(|j| check(j, &mut scratch) == Verdict::Clean)
            .count();
        fast.push(t.elapsed().as_secs_f64() / jpegs.len() as f64);
        let t = Instant::now();
        decoded = jpegs
            .iter()
            .filter(|j| decoder.decode_at_least(j, 1, 1).is_ok())
            .count();
        slow.push(t.elapsed().as_secs_f64() / jpegs.len() as f64);
    }
    let (f, s) = (median(fast), median(slow));
    println!(
        "{} JPEGs: entropy check {:.3} ms/image ({clean} clean), libjpeg-turbo 1/8 decode {:.3} ms/image ({decoded} ok): {:.2}x",
        jpegs.len(),
        f * 1e3,
        s * 1e3,
        s / f
    );
}

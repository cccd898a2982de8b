//! iBOT masks and the DINOv2 collate against the reference code (the `dinov2` package's
//! `data/masking.py` and `data/collate.py`, run from the project venv): with the same seed of
//! Python's `random`, the masks, indices, weights and upper bound are identical.

mod common;
use common::*;
use pipeline::collate::collate_masks;
use pipeline::masking::MaskingGenerator;
use pipeline::rng::PyRandom;

const REFERENCE: &str = r#"
import importlib.util, json, os, random, sys
import dinov2, torch
def load(name):
    path = os.path.join(os.path.dirname(dinov2.__file__), "data", name + ".py")
    spec = importlib.util.spec_from_file_location("ref_" + name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
masking, collate = load("masking"), load("collate")
seed, B, img, patch = (int(a) for a in sys.argv[1:5])
n = img // patch
gen = masking.MaskingGenerator(input_size=(n, n), max_num_patches=0.5 * img // patch * img // patch)
x = torch.zeros(1)
samples = [({"global_crops": [x, x], "local_crops": [x] * 8},) for _ in range(B)]
random.seed(seed)
out = collate.collate_data_and_cast(samples, (0.1, 0.5), 0.5, torch.half, n_tokens=n * n, mask_generator=gen)
print(json.dumps({
    "masks": out["collated_masks"].flatten().int().tolist(),
    "indices": out["mask_indices_list"].tolist(),
    "weights": out["masks_weight"].tolist(),
    "upperbound": out["upperbound"],
    "n_masked": out["n_masked_patches"].item(),
}))
"#;

#[test]
fn collate_masks_equal_the_reference_for_the_same_seed() {
    for (seed, batch, img) in [
        (0u64, 8usize, 224usize),
        (1, 64, 224),
        (12345, 5, 98),
        (7, 3, 518),
    ] {
        let stdout = run_python_with(
            REFERENCE,
            &[
                seed.to_string(),
                batch.to_string(),
                img.to_string(),
                "14".into(),
            ],
        );
        let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let grid = img / 14;
        let generator = MaskingGenerator::new(
            grid,
            grid,
            4,
            (0.5 * img as f64) as usize / 14 * img / 14,
            0.3,
            None,
        );
        let ours = collate_masks(
            2 * batch,
            (0.1, 0.5),
            0.5,
            &generator,
            &mut PyRandom::new(seed),
        );
        let masks: Vec<u64> = ours.masks.iter().map(|&m| m as u64).collect();
        let ref_masks: Vec<u64> = r["masks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(masks, ref_masks, "seed {seed}, batch {batch}, img {img}");
        let idx: Vec<i64> = r["indices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(ours.mask_indices, idx);
        let w: Vec<f32> = r["weights"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(ours.masks_weight, w);
        assert_eq!(ours.upperbound as u64, r["upperbound"].as_u64().unwrap());
        assert_eq!(
            ours.n_masked_patches() as u64,
            r["n_masked"].as_u64().unwrap()
        );
        if (seed, batch) == (1, 64) {
            // dinov2-reference §2.4: B=64 per GPU, N=256 gives upperbound 4941.
            assert_eq!(ours.upperbound, 4941);
        }
    }
}

#[test]
fn dinov2_generator_statistics() {
    // Half the global crops are masked, with mask ratios spread over [0.1, 0.5].
    let g = MaskingGenerator::dinov2(16);
    let mut rng = PyRandom::new(3);
    let mut masked_images = 0;
    let mut ratios = Vec::new();
    for _ in 0..200 {
        let b = collate_masks(16, (0.1, 0.5), 0.5, &g, &mut rng);
        for img in b.masks.chunks(256) {
            let k = img.iter().filter(|&&m| m).count();
            if k > 0 {
                masked_images += 1;
                ratios.push(k as f64 / 256.0);
            }
        }
        assert!(b.n_masked_patches() <= b.upperbound);
    }
    assert_eq!(masked_images, 200 * 8);
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    assert!((0.26..0.32).contains(&mean), "mean mask ratio {mean}");
    assert!(ratios.iter().all(|&r| (0.015..=0.5).contains(&r)));
}

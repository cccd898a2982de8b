//! What a run prints before it starts: the backbone, the data, the classifiers and the
//! precision.

use super::session::Run;
use crate::dist::Dist;
use model::DinoVisionTransformer;
use model::runtime::Precision;
use pipeline::dataset::Dataset;

/// Prints the banner (rank 0): the backbone (`what`: where its weights come from, `p`: its
/// patch size), the two datasets and the classifiers over `classes` classes.
pub(super) fn print(
    run: &Run,
    what: &str,
    p: usize,
    classes: i64,
    train_ds: &dyn Dataset,
    eval_ds: &dyn Dataset,
    dist: &Dist,
) {
    let s = run.s;
    eprintln!(
        "backbone: {} ({}x{} ViT, patch {}), {what}",
        vit_name(&run.vit),
        run.vit.config.depth,
        run.vit.config.embed_dim,
        p
    );
    eprintln!("train: {}", train_ds.describe());
    eprintln!("eval: {}", eval_ds.describe());
    eprintln!(
        "{} classifier(s), {classes} classes, {}",
        run.classifiers.len(),
        match (s.precision, s.fp16.is_some()) {
            (Precision::Fp32, _) => "fp32".to_string(),
            (p, true) => format!("{p} autocast + loss scaler"),
            (p, false) => format!("{p} autocast"),
        }
    );
    if dist.world() > 1 {
        eprintln!(
            "data parallel: {} processes x batch {} (global batch {})",
            dist.world(),
            s.train.batch_size,
            s.train.batch_size * dist.world()
        );
    }
}

fn vit_name(v: &DinoVisionTransformer) -> String {
    match v.config.embed_dim {
        384 => "ViT-S",
        768 => "ViT-B",
        1024 => "ViT-L",
        1536 => "ViT-g",
        _ => "custom",
    }
    .to_string()
}

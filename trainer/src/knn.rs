//! k-NN classification on frozen features, as dinov2's `eval/knn.py` (`KnnModule`): cosine
//! similarity of L2-normalised features, the `max(k)` nearest training samples, their
//! similarities turned into weights by `softmax(sim / T)` over those `max(k)`, and for each k
//! the class scores summed over the first k neighbours.

use anyhow::{Result, ensure};
use tch::{Kind, Tensor};

/// Top-1 / top-5 accuracy (in [0, 1]) for each k.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KnnResult {
    pub k: usize,
    pub top1: f64,
    pub top5: f64,
}

/// Class scores `[n_query, classes]` for each k, for one chunk of queries. Features must be
/// L2-normalised (rows).
pub fn knn_scores(
    train: &Tensor,
    train_labels: &Tensor,
    query: &Tensor,
    ks: &[usize],
    temperature: f64,
    classes: i64,
) -> Vec<Tensor> {
    let max_k = *ks.iter().max().unwrap_or(&1) as i64;
    let sim = query.mm(&train.tr());
    let (topk_sims, idx) = sim.topk(max_k.min(train.size()[0]), 1, true, true);
    let neighbour_labels = train_labels
        .view([1, -1])
        .expand([query.size()[0], -1], false)
        .gather(1, &idx, false);
    let weights = (topk_sims / temperature).softmax(1, Kind::Float);
    let votes = neighbour_labels.one_hot(classes).to_kind(Kind::Float) * weights.unsqueeze(-1);
    ks.iter()
        .map(|&k| {
            votes
                .narrow(1, 0, (k as i64).min(votes.size()[1]))
                .sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
        })
        .collect()
}

/// Top-k hits of `scores` `[n, classes]` for `labels` `[n]`: (top-1 hits, top-5 hits).
pub fn topk_hits(scores: &Tensor, labels: &Tensor) -> (i64, i64) {
    let classes = scores.size()[1];
    let (_, top) = scores.topk(5.min(classes), 1, true, true);
    let hit = top.eq_tensor(&labels.view([-1, 1]));
    let top1 = hit.narrow(1, 0, 1).sum(Kind::Int64).int64_value(&[]);
    let top5 = hit.sum(Kind::Int64).int64_value(&[]);
    (top1, top5)
}

/// k-NN accuracy of `query` features against `train` features (both raw; normalised here),
/// in chunks of `chunk` queries.
#[allow(clippy::too_many_arguments)]
pub fn knn_eval(
    train: &Tensor,
    train_labels: &Tensor,
    query: &Tensor,
    query_labels: &Tensor,
    ks: &[usize],
    temperature: f64,
    classes: i64,
    chunk: i64,
) -> Result<Vec<KnnResult>> {
    ensure!(
        !ks.is_empty() && ks.iter().all(|&k| k > 0),
        "k-NN needs k values > 0"
    );
    ensure!(
        train.size()[0] > 0 && query.size()[0] > 0,
        "k-NN needs training and query features"
    );
    let norm = |t: &Tensor| {
        let t = t.to_kind(Kind::Float);
        let n = t
            .norm_scalaropt_dim(2.0, [1i64].as_slice(), true)
            .clamp_min(1e-12);
        &t / n
    };
    let (train, query) = (norm(train), norm(query));
    let train_labels = train_labels.to_kind(Kind::Int64);
    let mut hits = vec![(0i64, 0i64); ks.len()];
    let n = query.size()[0];
    let mut start = 0;
    while start < n {
        let len = chunk.min(n - start);
        let q = query.narrow(0, start, len);
        let l = query_labels.narrow(0, start, len).to_kind(Kind::Int64);
        for (h, s) in hits.iter_mut().zip(knn_scores(
            &train,
            &train_labels,
            &q,
            ks,
            temperature,
            classes,
        )) {
            let (a, b) = topk_hits(&s, &l);
            h.0 += a;
            h.1 += b;
        }
        start += len;
    }
    Ok(ks
        .iter()
        .zip(hits)
        .map(|(&k, (a, b))| KnnResult {
            k,
            top1: a as f64 / n as f64,
            top5: b as f64 / n as f64,
        })
        .collect())
}

//! The embedding before layer 0 (`nn.Embedding(V, I)`): token ids in, the gather and the
//! deterministic segmented-sum backward on the GPU against the CPU reference, training,
//! bitwise reproducibility, and ids outside the vocabulary.

mod common;

use common::compare::embedding;
use wgpu_rnn::{
    cpu, Batch, CellKind, Error, LossKind, OptimizerConfig, OptimizerKind, Rnn, RnnConfig, Targets,
    Train, TrainConfig, Trainer,
};

fn cfg(cell: CellKind, layers: usize, bi: bool, vocab: usize) -> RnnConfig {
    RnnConfig::new(6, 8, 5)
        .with_cell(cell)
        .with_layers(layers)
        .with_bidirectional(bi)
        .with_embedding(vocab)
}

#[test]
fn every_cell_matches_the_reference_with_the_tables_gradient() {
    let gpu = common::gpu();
    for cell in CellKind::ALL {
        for (layers, bi) in [(1, false), (2, true)] {
            let c = cfg(cell, layers, bi, 13);
            pollster::block_on(embedding::compare_async(gpu, &c, (7, 4), None, 1));
        }
    }
    // Variable lengths: rows past their end read ids too, and get no gradient from them.
    let c = cfg(CellKind::Lstm, 2, true, 11);
    pollster::block_on(embedding::compare_async(
        gpu,
        &c,
        (6, 3),
        Some(&[6, 2, 4]),
        2,
    ));
}

#[test]
fn a_large_vocabulary_and_batch_sum_the_same_bits_every_run() {
    // V = 1000 rows, T·B = 2048 positions (a few ids read hundreds of times): the sum per
    // row runs in a fixed order, so two runs agree bit for bit.
    let gpu = common::gpu();
    let c = RnnConfig::new(16, 8, 4).with_embedding(1000);
    let a = pollster::block_on(embedding::compare_async(gpu, &c, (64, 32), None, 3));
    let b = pollster::block_on(embedding::compare_async(gpu, &c, (64, 32), None, 3));
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    assert!(a.iter().any(|&g| g != 0.0));
}

#[test]
fn training_on_tokens_matches_the_reference_trainer() {
    let gpu = common::gpu();
    for cell in [CellKind::Gru, CellKind::Lstm] {
        pollster::block_on(embedding::training_async(gpu, cfg(cell, 2, false, 9)));
    }
}

#[test]
fn an_id_outside_the_vocabulary_is_refused_before_any_work() {
    let gpu = common::gpu();
    let c = cfg(CellKind::Gru, 1, false, 10);
    let mut rnn = Rnn::new(gpu, c.clone(), 0).unwrap();
    let mut ids = vec![1u32; 12];
    ids[7] = 10;
    let e = rnn.forward_tokens(&ids, [4, 3], None, None).unwrap_err();
    assert!(
        matches!(
            e,
            Error::BadToken {
                id: 10,
                vocab: 10,
                at: [2, 1]
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("token id 10 at (t, b) = (2, 1)"),
        "{e}"
    );
    // Nothing ran, so there is no forward to go back through.
    let dy = gpu.tensor(&[4, 3, 5], &[0.0; 60]).unwrap();
    assert!(matches!(rnn.backward(&dy, None), Err(Error::NoForward(_))));

    let p = c.init_params(0).to_f64();
    assert!(matches!(
        cpu::embed(&c, &p, &ids, 4, 3),
        Err(Error::BadToken { id: 10, .. })
    ));

    let train = TrainConfig::new(
        OptimizerConfig::new(OptimizerKind::Adam, 0.01),
        LossKind::CrossEntropy,
    );
    let mut trainer = Trainer::new(rnn, train).unwrap();
    let before = trainer.params().unwrap();
    let batch = Batch::from_tokens(4, 3, ids, Targets::Classes(vec![0; 12])).unwrap();
    assert!(matches!(trainer.step(&batch), Err(Error::BadToken { .. })));
    assert_eq!(trainer.steps(), 0);
    assert_eq!(trainer.params().unwrap(), before);
}

#[test]
fn features_and_ids_go_only_to_the_models_that_take_them() {
    let gpu = common::gpu();
    let mut with = Rnn::new(gpu, cfg(CellKind::Rnn, 1, false, 10), 0).unwrap();
    let x = gpu.tensor(&[2, 1, 6], &[0.0; 12]).unwrap();
    let e = with.forward(&x, None).unwrap_err().to_string();
    assert!(e.contains("embeds token ids (vocabulary 10)"), "{e}");
    let mut without = Rnn::new(gpu, RnnConfig::new(6, 8, 5), 0).unwrap();
    let e = without
        .forward_tokens(&[0, 1], [2, 1], None, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("has no embedding"), "{e}");
    // A batch of features for a model of ids, and the reverse.
    let train = TrainConfig::new(OptimizerConfig::new(OptimizerKind::Sgd, 0.1), LossKind::Mse);
    let mut t = Trainer::new(with, train).unwrap();
    let features = Batch::new(2, 1, vec![0.0; 12], Targets::Values(vec![0.0; 10])).unwrap();
    assert!(t.step(&features).is_err());
    assert!(RnnConfig::new(6, 8, 5)
        .with_embedding(0)
        .validate()
        .is_err());
}

#[test]
fn the_table_goes_in_and_out_of_state_dicts_and_checkpoints() {
    use wgpu_rnn::files::interop::{export_torch, load_torch, parse_torch};
    use wgpu_rnn::Checkpoint;
    let dir = std::env::temp_dir().join(format!("wgpu-rnn-embedding-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c = cfg(CellKind::Lstm, 2, true, 10);
    let params = c.init_params(4);
    let path = dir.join("model.safetensors");
    export_torch(&c, &params, &path).unwrap();
    let back = load_torch(&path, None).unwrap();
    assert_eq!((back.config, back.params), (c.clone(), params.clone()));

    // Without the metadata, the importer infers the table from its name and shape; a table
    // whose width is not weight_ih_l0's is refused, naming both.
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    type Rename = dyn Fn(&str, Vec<usize>) -> (String, Vec<usize>);
    let strip = |rename: &Rename| -> Vec<u8> {
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
            .tensors()
            .into_iter()
            .map(|(n, v)| {
                let (n, shape) = rename(&n, v.shape().to_vec());
                let data = &v.data()[..shape.iter().product::<usize>() * 4];
                (
                    n,
                    safetensors::tensor::TensorView::new(v.dtype(), shape, data).unwrap(),
                )
            })
            .collect();
        safetensors::serialize(views, None).unwrap()
    };
    let inferred = parse_torch(&strip(&|n, s| (n.to_string(), s)), None).unwrap();
    assert_eq!(inferred.config.embedding, Some(10));
    let narrow = strip(&|n, s| match n {
        "embedding.weight" => (n.to_string(), vec![10, 5]),
        _ => (n.to_string(), s),
    });
    let e = parse_torch(&narrow, None).unwrap_err();
    assert!(
        e.contains("embedding.weight has shape [10, 5], expected (vocabulary, 6)"),
        "{e}"
    );

    // A checkpoint keeps the table's optimizer moments too, and resumes exactly.
    let gpu = common::gpu();
    let train = TrainConfig::new(
        OptimizerConfig::new(OptimizerKind::Adam, 0.01),
        LossKind::CrossEntropy,
    );
    let mut a = Trainer::new(
        Rnn::from_params(gpu, c.clone(), &params).unwrap(),
        train.clone(),
    )
    .unwrap();
    for step in 0..3 {
        a.step(&embedding::batch(step, (4, 2), 10, 5)).unwrap();
    }
    let ck_path = dir.join("run.safetensors");
    Checkpoint::from_trainer(&a, "text", None)
        .unwrap()
        .save(&ck_path)
        .unwrap();
    let ck = Checkpoint::load(&ck_path).unwrap();
    assert_eq!(ck.config, c);
    let (m, _) = ck.optim.as_ref().unwrap();
    assert!(m.embedding.as_ref().unwrap().iter().any(|&v| v != 0.0));
    let mut b = Trainer::new(Rnn::from_params(gpu, c.clone(), &ck.params).unwrap(), train).unwrap();
    ck.restore_into(&mut b).unwrap();
    for step in 3..5 {
        let batch = embedding::batch(step, (4, 2), 10, 5);
        assert_eq!(a.step(&batch).unwrap().loss, b.step(&batch).unwrap().loss);
    }
    assert_eq!(a.params().unwrap(), b.params().unwrap());
    std::fs::remove_dir_all(&dir).ok();
}

//! `rightsize._native`: what the Python package reaches in Rust — the command line, device
//! information, text models (embed, generate), SM partitions whose streams PyTorch can run
//! on, and the harness's request loop for PyTorch tenants. The Python modules in
//! `python/rightsize/` wrap it; GPU work runs with the GIL released.

use std::path::PathBuf;

use parking_lot::Mutex;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use rightsize::cli::text::{Task, TextModel as Model};
use rightsize::runtime::{Device, PartitionError, PartitionId, PartitionPool, PoolSpec};

/// A failure of rightsize as a Python `RuntimeError`, with its whole chain of causes.
fn failed(e: impl Into<anyhow::Error>) -> PyErr {
    PyRuntimeError::new_err(format!("{:#}", e.into()))
}

/// Runs the `rightsize` command line `argv` (the program's name first) and returns its exit
/// status. As the executable's `main`, it first asks for the most hardware queues for this
/// process where the user set none (`rightsize::runtime::queues`): the `rightsize` script and
/// `python -m rightsize` call it first thing; where CUDA already started in the process, that
/// changes nothing.
#[pyfunction]
fn main(py: Python<'_>, argv: Vec<String>) -> u8 {
    rightsize::runtime::queues::raise_for_this_process();
    py.detach(|| rightsize::cli::run(argv))
}

/// GPU `ordinal` as JSON: SMs, memory, driver, stream priorities, SM partitions.
#[pyfunction]
#[pyo3(signature = (ordinal = 0))]
fn device_info_json(py: Python<'_>, ordinal: usize) -> PyResult<String> {
    py.detach(|| {
        let device = Device::open(ordinal).map_err(failed)?;
        serde_json::to_string(device.info()).map_err(failed)
    })
}

/// Runs a PyTorch tenant's worker loop — the harness's request loop and worker protocol, the
/// same as every worker's, on this process's stdin and stdout — with `request`, a callable of
/// no arguments, as one request; `spec` is the worker spec the harness gave (JSON). Returns
/// once the harness says stop and the samples are sent. A request's exception ends the loop
/// and is raised again as it was; the loop's own failures raise a `RuntimeError`.
#[pyfunction]
fn serve_worker(py: Python<'_>, spec: &str, request: Py<PyAny>) -> PyResult<()> {
    let raised: Mutex<Option<PyErr>> = Mutex::new(None);
    let r = py.detach(|| {
        rightsize::harness::worker::serve_requests(spec, || {
            Python::attach(|py| request.call0(py)).map(drop).map_err(|e| {
                let why = anyhow::anyhow!("a request raised {e}");
                *raised.lock() = Some(e);
                why
            })
        })
    });
    match (r, raised.into_inner()) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(e)) => Err(e),
        (Err(e), None) => Err(failed(e)),
    }
}

/// A Hugging Face checkpoint on GPU 0 with its tokenizer, for embedding (an encoder) or
/// generation (a decoder).
#[pyclass(name = "TextModel", module = "rightsize._native")]
struct TextModel {
    model: Mutex<Model>,
}

#[pymethods]
impl TextModel {
    /// Loads the model directory `path` (config.json, safetensors weights, tokenizer.json) for
    /// `task`, "embed" or "generate".
    #[new]
    fn new(py: Python<'_>, path: PathBuf, task: &str) -> PyResult<TextModel> {
        let task = match task {
            "embed" => Task::Embed,
            "generate" => Task::Generate,
            other => return Err(PyValueError::new_err(format!("task {other:?}: \"embed\" or \"generate\""))),
        };
        let model = py.detach(|| Model::load(&path, task)).map_err(failed)?;
        Ok(TextModel { model: Mutex::new(model) })
    }

    /// Sentence embeddings of `texts` (mean pooling, L2-normalised) and the indices of the
    /// texts cut to `max_tokens` tokens.
    #[pyo3(signature = (texts, max_tokens = 256))]
    fn embed(&self, py: Python<'_>, texts: Vec<String>, max_tokens: u32) -> PyResult<(Vec<Vec<f32>>, Vec<usize>)> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        py.detach(|| self.model.lock().embed(&refs, max_tokens)).map_err(failed)
    }

    /// The text `tokens` greedily decoded tokens add to `prompt`.
    #[pyo3(signature = (prompt, tokens = 32))]
    fn generate(&self, py: Python<'_>, prompt: &str, tokens: u32) -> PyResult<String> {
        py.detach(|| self.model.lock().generate(prompt, tokens)).map_err(failed)
    }
}

/// An SM partition of a GPU (a green context) and a stream on it: work issued to the stream
/// runs on the partition's SMs only.
#[pyclass(name = "Partition", module = "rightsize._native")]
struct Partition {
    pool: PartitionPool,
    device: Device,
    sms: u32,
    first_group: u32,
}

#[pymethods]
impl Partition {
    /// A partition of GPU `device` with at least `sms` SMs (rounded up to the device's groups
    /// of SMs), from group `first_group` of its split; its stream has the least priority, or
    /// the greatest with `high_priority`.
    #[new]
    #[pyo3(signature = (sms, device = 0, first_group = 0, high_priority = false))]
    fn new(py: Python<'_>, sms: u32, device: usize, first_group: u32, high_priority: bool) -> PyResult<Partition> {
        py.detach(|| {
            let device = Device::open(device).map_err(failed)?;
            let range = device.info().stream_priorities;
            let priority = if high_priority { range.greatest } else { range.least };
            let spec =
                PoolSpec::window(&device.info().partitions, sms, first_group, Some(priority)).map_err(|e| match e {
                    PartitionError::Unsupported(_) => PyRuntimeError::new_err(e.to_string()),
                    e => PyValueError::new_err(e.to_string()),
                })?;
            let pool = PartitionPool::new(&device, &spec).map_err(failed)?;
            let sms = pool.get(PartitionId::green(0)).map_err(failed)?.sms();
            Ok(Partition { pool, device, sms, first_group })
        })
    }

    /// SMs of the partition.
    #[getter]
    fn sms(&self) -> u32 {
        self.sms
    }

    /// The first group of SMs it starts at.
    #[getter]
    fn first_group(&self) -> u32 {
        self.first_group
    }

    /// The GPU's ordinal.
    #[getter]
    fn device(&self) -> usize {
        self.device.info().ordinal
    }

    /// The stream's handle (a `CUstream`, as an integer), for
    /// `torch.cuda.ExternalStream(handle)`; valid while the partition lives.
    #[getter]
    fn stream(&self) -> PyResult<usize> {
        let part = self.pool.get(PartitionId::green(0)).map_err(failed)?;
        Ok(part.stream(0).map_err(failed)? as usize)
    }

    /// Waits for the work issued to its stream.
    fn synchronize(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.pool.synchronize()).map_err(failed)
    }

    fn __repr__(&self) -> String {
        format!("Partition(sms={}, device={}, first_group={})", self.sms, self.device(), self.first_group)
    }
}

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(main, m)?)?;
    m.add_function(wrap_pyfunction!(device_info_json, m)?)?;
    m.add_function(wrap_pyfunction!(serve_worker, m)?)?;
    m.add("WORKER_PROTOCOL", rightsize::harness::child::PROTOCOL)?;
    m.add_class::<TextModel>()?;
    m.add_class::<Partition>()?;
    Ok(())
}

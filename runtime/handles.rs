//! Owned driver handles: the one place the runtime creates and destroys events, streams,
//! green contexts, graphs and modules. Each wrapper destroys its handle once, on drop; the
//! owner drops it after the last work that uses it (field order, or a synchronize first).

use cudarc::driver::sys;

use super::error::{check, Result};

/// Declares an owned handle type: the raw handle, `raw()`, Send + Sync, and its destroy call.
macro_rules! owned {
    ($(#[$doc:meta])* $vis:vis $name:ident($raw:ty), $destroy:ident) => {
        $(#[$doc])*
        #[derive(Debug)]
        $vis struct $name($raw);

        impl $name {
            /// The raw handle, valid while `self` lives.
            #[allow(dead_code)]
            $vis fn raw(&self) -> $raw {
                self.0
            }
        }

        // SAFETY: driver handles may be used from any thread; the wrapper never mutates it.
        unsafe impl Send for $name {}
        // SAFETY: as above.
        unsafe impl Sync for $name {}

        impl Drop for $name {
            fn drop(&mut self) {
                // SAFETY: made by this module's constructor, destroyed once here; owners drop
                // it after the last work that uses it.
                unsafe { sys::$destroy(self.0) };
            }
        }
    };
}

owned!(
    /// A CUDA event.
    pub Event(sys::CUevent),
    cuEventDestroy_v2
);
owned!(
    /// A non-blocking stream, of the primary context or of a green context.
    pub Stream(sys::CUstream),
    cuStreamDestroy_v2
);
owned!(
    /// A green context (destroy it after its streams).
    pub(crate) GreenContext(sys::CUgreenCtx),
    cuGreenCtxDestroy
);
owned!(
    /// A captured graph, kept until it is instantiated.
    pub(crate) Graph(sys::CUgraph),
    cuGraphDestroy
);
owned!(
    /// An instantiated graph.
    pub(crate) GraphExec(sys::CUgraphExec),
    cuGraphExecDestroy
);
owned!(
    /// A loaded module (unload it after its functions' last use).
    pub(crate) Module(sys::CUmodule),
    cuModuleUnload
);

impl Event {
    /// A new event in the current context: with timing (for elapsed times) or without (for
    /// ordering streams only).
    pub fn new(timing: bool) -> Result<Event> {
        let flags = if timing { 0 } else { sys::CUevent_flags::CU_EVENT_DISABLE_TIMING as u32 };
        let mut e = std::ptr::null_mut();
        // SAFETY: a valid out-pointer; the caller made a context current.
        check("cuEventCreate", unsafe { sys::cuEventCreate(&mut e, flags) })?;
        Ok(Event(e))
    }
}

impl Stream {
    /// A non-blocking stream of `priority` in the current context (the primary one).
    pub fn new(priority: i32) -> Result<Stream> {
        let mut s = std::ptr::null_mut();
        // SAFETY: a valid out-pointer; the caller made the context current.
        check("cuStreamCreateWithPriority", unsafe {
            sys::cuStreamCreateWithPriority(&mut s, sys::CUstream_flags::CU_STREAM_NON_BLOCKING as u32, priority)
        })?;
        Ok(Stream(s))
    }

    /// A non-blocking stream of `priority` on green context `green`.
    pub(crate) fn on_green(green: &GreenContext, priority: i32) -> Result<Stream> {
        let mut s = std::ptr::null_mut();
        // SAFETY: a live green context; non-blocking streams are required for green contexts.
        check("cuGreenCtxStreamCreate", unsafe {
            sys::cuGreenCtxStreamCreate(&mut s, green.0, sys::CUstream_flags::CU_STREAM_NON_BLOCKING as u32, priority)
        })?;
        Ok(Stream(s))
    }
}

impl GreenContext {
    /// A green context on device `dev` from the resource descriptor `desc`, with a default
    /// stream.
    pub(crate) fn new(desc: sys::CUdevResourceDesc, dev: sys::CUdevice) -> Result<GreenContext> {
        let mut handle = std::ptr::null_mut();
        // SAFETY: `desc` was generated for this device; a valid out-pointer.
        check("cuGreenCtxCreate", unsafe {
            sys::cuGreenCtxCreate(
                &mut handle,
                desc,
                dev,
                sys::CUgreenCtxCreate_flags::CU_GREEN_CTX_DEFAULT_STREAM as u32,
            )
        })?;
        Ok(GreenContext(handle))
    }
}

impl Graph {
    /// Ends the capture begun on `stream` and owns the graph it made.
    pub(crate) fn end_capture(stream: sys::CUstream) -> Result<Graph> {
        let mut graph = std::ptr::null_mut();
        // SAFETY: ends a capture on a live stream; a valid out-pointer.
        check("cuStreamEndCapture", unsafe { sys::cuStreamEndCapture(stream, &mut graph) })?;
        Ok(Graph(graph))
    }

    /// Its number of nodes.
    pub(crate) fn nodes(&self) -> Result<usize> {
        let mut nodes = 0usize;
        // SAFETY: a live graph; a null array asks for the count only.
        check("cuGraphGetNodes", unsafe { sys::cuGraphGetNodes(self.0, std::ptr::null_mut(), &mut nodes) })?;
        Ok(nodes)
    }

    /// Instantiates it.
    pub(crate) fn instantiate(&self) -> Result<GraphExec> {
        let mut exec = std::ptr::null_mut();
        // SAFETY: a live graph; a valid out-pointer.
        check("cuGraphInstantiate", unsafe { sys::cuGraphInstantiateWithFlags(&mut exec, self.0, 0) })?;
        Ok(GraphExec(exec))
    }
}

impl Module {
    /// Loads `image` (a fatbin or cubin) into the current context.
    pub(crate) fn load(image: &[u8]) -> Result<Module> {
        let mut m = std::ptr::null_mut();
        // SAFETY: `image` is a complete module image that outlives the call.
        check("cuModuleLoadData", unsafe { sys::cuModuleLoadData(&mut m, image.as_ptr().cast()) })?;
        Ok(Module(m))
    }

    /// Owns `m`, a module the caller loaded (unloaded on drop).
    pub(crate) fn from_raw(m: sys::CUmodule) -> Module {
        Module(m)
    }
}

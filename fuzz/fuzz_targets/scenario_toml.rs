#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rightsize::harness::bad_input::scenario_toml(data);
});

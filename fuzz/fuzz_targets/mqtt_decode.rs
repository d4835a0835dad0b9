//! The MQTT packet decoder on arbitrary bytes, as a connection feeds it: it must return a
//! packet, "need more" or an error, and never panic or overrun.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A small bound too, so that the size checks are exercised.
    coupler_mqtt::decode_all(data, 1 << 20);
    coupler_mqtt::decode_all(data, 64);
});

//! 100 connect/disconnect cycles through the process-wide connection leave no thread and no
//! descriptor behind. Alone in its test binary, so no other test's threads are counted.

mod common;

use common::{wait_event, Broker};
use meta_log_federation_module::events::{Event, BUS};
use meta_log_federation_module::runtime::{fd_count, thread_count};
use meta_log_federation_module::transport::connection;
use meta_log_federation_module::transport::options::ConnectOptions;
use meta_log_federation_module::transport::url;

#[test]
fn no_threads_or_descriptors_leak_over_100_cycles() {
    let broker = Broker::start();
    let cycle = |i: usize| {
        let opts = ConnectOptions::new(url::parse(&broker.url()).unwrap(), format!("cycle-{i}"));
        connection::connect(opts, &BUS).unwrap();
        wait_event(&BUS, 10, |e| matches!(e, Event::Connected { .. }));
        assert!(connection::disconnect());
    };
    cycle(0);
    assert!(!connection::shutdown_blocking());
    let (threads, fds) = (thread_count(), fd_count());
    for i in 1..=100 {
        cycle(i);
    }
    connection::shutdown_blocking();
    assert_eq!(thread_count(), threads, "threads leaked");
    assert_eq!(fd_count(), fds, "descriptors leaked");
}

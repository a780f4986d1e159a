import Foundation
import Taps

extension TapsBench {
    /// --accept-loops: per stack, establishments per second and the throughput of several
    /// connections at once, with the listener's accepted connections on one loop and spread over a
    /// loop per core, in turn, `rounds` times; the medians of each.
    func measureAcceptSpread(_ stack: String, cert: String, key: String) async throws {
        let serverGroup = EventLoopGroup(loopCount: System.coreCount, name: "bench-accept")
        let clientGroup = EventLoopGroup(loopCount: System.coreCount, name: "bench-connect")
        defer {
            serverGroup.shutdown()
            clientGroup.shutdown()
        }
        let bench = AcceptSpreadBench(stack: stack, cert: cert, key: key, serverGroup: serverGroup, clientGroup: clientGroup,
                                      concurrency: 8)
        var establishments: [(spread: Double, one: Double)] = [], throughput: [(spread: Double, one: Double)] = []
        for round in 0..<max(1, rounds) {
            var rates = (spread: 0.0, one: 0.0), transfers = (spread: 0.0, one: 0.0)
            for spread in round % 2 == 0 ? [true, false] : [false, true] {
                let rate = try await bench.establishments(spread: spread, seconds: seconds)
                let transfer = try await bench.throughput(spread: spread, seconds: seconds, messageSize: messageBytes)
                if spread { (rates.spread, transfers.spread) = (rate, transfer) } else { (rates.one, transfers.one) = (rate, transfer) }
            }
            establishments.append(rates)
            throughput.append(transfers)
        }
        let unit = stack == "tls-tcp" ? "handshakes_per_second" : "connections_per_second"
        let rate = (spread: Self.median(establishments.map(\.spread)), one: Self.median(establishments.map(\.one)))
        let mbps = (spread: Self.median(throughput.map(\.spread)), one: Self.median(throughput.map(\.one)))
        func format(_ value: Double) -> String { String(format: "%.1f", value) }
        func ratio(_ pair: (spread: Double, one: Double)) -> String { String(format: "%.2f", pair.one > 0 ? pair.spread / pair.one : 0) }
        if json {
            let rounds = zip(establishments, throughput).map { "[\(format($0.0.spread)), \(format($0.0.one)), \(format($0.1.spread)), \(format($0.1.one))]" }
            print("{\"stack\": \"\(stack)\", \"accept_loops\": \(serverGroup.loops.count), \"concurrency\": \(bench.concurrency), "
                  + "\"\(unit)\": \(format(rate.spread)), \"one_loop_\(unit)\": \(format(rate.one)), \"ratio\": \(ratio(rate)), "
                  + "\"mbps\": \(format(mbps.spread)), \"one_loop_mbps\": \(format(mbps.one)), \"mbps_ratio\": \(ratio(mbps)), "
                  + "\"server_key\": \"\(rsa ? "rsa2048" : "p256")\", \"message_size\": \(messageBytes), \"seconds\": \(seconds), \"rounds\": [\(rounds.joined(separator: ", "))]}")
        } else {
            let label = stack == "tls-tcp" ? "handshakes/s" : "connections/s"
            let name = stack.padding(toLength: 8, withPad: " ", startingAt: 0)
            print("\(name) \(serverGroup.loops.count) loops \(format(rate.spread)) \(label)   one loop \(format(rate.one)) \(label)   ratio \(ratio(rate))")
            print("\(name) \(bench.concurrency) connections: \(serverGroup.loops.count) loops \(format(mbps.spread)) MB/s   one loop \(format(mbps.one)) MB/s   ratio \(ratio(mbps))")
        }
    }
}

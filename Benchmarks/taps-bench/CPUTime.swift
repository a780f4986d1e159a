import Glibc

/// The CPU time this process has spent, user and system, on all its threads.
enum CPUTime {
    static func now() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    /// MB (10^6 bytes) per CPU-second spent since `start`.
    static func megabytesPerSecond(_ bytes: Int, since start: Double) -> Double {
        let spent = now() - start
        return spent > 0 ? Double(bytes) / 1e6 / spent : 0
    }

    private static func seconds(_ time: timeval) -> Double {
        Double(time.tv_sec) + Double(time.tv_usec) / 1e6
    }
}

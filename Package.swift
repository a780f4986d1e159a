// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "swift-taps",
    products: [
        .library(name: "Taps", targets: ["Taps"]),
        .executable(name: "taps-demo", targets: ["TapsDemo"]),
        .executable(name: "taps-echo", targets: ["TapsEcho"]),
        .executable(name: "taps-chat", targets: ["TapsChat"]),
        .executable(name: "taps-room-chat", targets: ["TapsRoomChat"]),
        .executable(name: "taps-bench", targets: ["TapsBench"]),
        .executable(name: "taps-soak", targets: ["TapsSoak"]),
        .executable(name: "taps-sctp-baseline", targets: ["TapsSCTPBaseline"]),
        .executable(name: "taps-sctp-peer", targets: ["TapsSCTPPeer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        // `swift package generate-documentation` for the DocC catalog in Sources/Taps/Taps.docc.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
        // Only for the BoringSSL it vendors (DTLS 1.3, which the system OpenSSL 3.0 lacks); pinned
        // exactly, because its C module is not swift-nio-ssl's public API.
        .package(url: "https://github.com/apple/swift-nio-ssl", exact: "2.37.6"),
    ],
    targets: [
        // System libraries, found by pkg-config (Debian: libuv1-dev, libusrsctp-dev, libssl-dev).
        .systemLibrary(name: "CLibUV", pkgConfig: "libuv", providers: [.apt(["libuv1-dev"])]),
        .systemLibrary(name: "CUsrSCTP", pkgConfig: "usrsctp", providers: [.apt(["libusrsctp-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        // One-line C wrappers for what Swift cannot import (OpenSSL macros).
        .target(
            name: "CTapsShims",
            linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]
        ),
        // DTLS 1.3 and the DTLS chunk's record AEAD on BoringSSL, behind a small Swift API of bytes and keys. The only module that
        // imports CNIOBoringSSL (implementation-only): no module may see it and COpenSSL together,
        // or same-named C functions bind to either library.
        .target(
            name: "TapsDTLS13",
            dependencies: [.product(name: "NIOSSL", package: "swift-nio-ssl")]
        ),
        .target(
            name: "Taps",
            dependencies: [
                "CLibUV", "CUsrSCTP", "COpenSSL", "CTapsShims", "TapsDTLS13",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),
        .executableTarget(
            name: "TapsDemo",
            dependencies: ["Taps", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Examples/taps-demo"
        ),
        .executableTarget(
            name: "TapsEcho",
            dependencies: ["Taps", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Examples/taps-echo"
        ),
        .executableTarget(
            name: "TapsChat",
            dependencies: ["Taps", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Examples/taps-chat"
        ),
        // The DocC tutorial's chat, as its last step leaves it (TutorialCodeTests checks they agree).
        .executableTarget(name: "TapsRoomChat", dependencies: ["Taps"], path: "Examples/room-chat"),
        // The C baseline: the same transfers written directly on libuv + OpenSSL.
        .target(
            name: "TapsBaseline",
            path: "Benchmarks/Baseline",
            linkerSettings: [.linkedLibrary("uv"), .linkedLibrary("ssl"), .linkedLibrary("crypto")]
        ),
        // The SCTP baseline: usrsctp's own API and UDP encapsulation threads, in a process of its own.
        .executableTarget(
            name: "TapsSCTPBaseline",
            path: "Benchmarks/SCTPBaseline",
            cSettings: [.headerSearchPath("../../Sources/CUsrSCTP")],  // shim.h: usrsctp.h with its address families
            linkerSettings: [.linkedLibrary("usrsctp"), .linkedLibrary("pthread")]
        ),
        .executableTarget(
            name: "TapsBench",
            dependencies: [
                "Taps", "TapsBaseline",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            path: "Benchmarks/taps-bench"
        ),
        // An independent SCTP-over-UDP peer for interop tests: usrsctp's own UDP encapsulation.
        .executableTarget(
            name: "TapsSoak",
            dependencies: ["Taps", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Benchmarks/taps-soak"
        ),
        .executableTarget(
            name: "TapsSCTPPeer",
            path: "Tests/SCTPPeer",
            cSettings: [.headerSearchPath("../../Sources/CUsrSCTP")],
            linkerSettings: [.linkedLibrary("usrsctp"), .linkedLibrary("pthread")]
        ),
        .testTarget(
            name: "TapsTests",
            dependencies: ["Taps", "TapsDTLS13", .product(name: "MetricsTestKit", package: "swift-metrics")]
        ),
    ],
    swiftLanguageModes: [.v6]
)

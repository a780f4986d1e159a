/// An error from the transport system: a code that programs switch on, and a message that says what
/// happened and, where it helps, what to do.
///
/// A struct with static codes rather than an enum, so new kinds of error do not break callers.
public struct TransportError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// No protocol stack satisfies the required properties; the message names the unmet one.
        public static let noCandidate = Code(rawValue: "noCandidate")
        public static let resolutionFailed = Code(rawValue: "resolutionFailed")
        public static let connectionRefused = Code(rawValue: "connectionRefused")
        public static let connectionReset = Code(rawValue: "connectionReset")
        public static let timedOut = Code(rawValue: "timedOut")
        public static let addressInUse = Code(rawValue: "addressInUse")
        /// The peer's certificate chain did not validate (unknown CA, expired, ...).
        public static let certificateRejected = Code(rawValue: "certificateRejected")
        /// The peer's certificate is valid but not for the expected host name.
        public static let hostnameMismatch = Code(rawValue: "hostnameMismatch")
        /// A certificate, key or trust file could not be read or parsed.
        public static let invalidCredentials = Code(rawValue: "invalidCredentials")
        /// The security handshake failed for another reason (alert from the peer, no shared cipher, ...).
        public static let handshakeFailed = Code(rawValue: "handshakeFailed")
        /// The peer sent bytes that are not valid for the protocol (e.g. garbage instead of TLS records).
        public static let protocolViolation = Code(rawValue: "protocolViolation")
        /// The peer closed the byte stream without a TLS close_notify: the data may be truncated.
        public static let truncated = Code(rawValue: "truncated")
        public static let connectionClosed = Code(rawValue: "connectionClosed")
        /// The application aborted the connection (RFC 9622 section 10: the `connectionError` event
        /// of a local Abort).
        public static let aborted = Code(rawValue: "aborted")
        public static let messageTooLarge = Code(rawValue: "messageTooLarge")
        public static let invalidArgument = Code(rawValue: "invalidArgument")
        public static let notSupported = Code(rawValue: "notSupported")
        public static let io = Code(rawValue: "io")
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }

    public static func noCandidate(_ message: String) -> TransportError { .init(.noCandidate, message) }
    public static func resolutionFailed(_ message: String) -> TransportError { .init(.resolutionFailed, message) }
    public static func connectionRefused(_ message: String) -> TransportError { .init(.connectionRefused, message) }
    public static func connectionReset(_ message: String) -> TransportError { .init(.connectionReset, message) }
    public static func timedOut(_ message: String) -> TransportError { .init(.timedOut, message) }
    public static func addressInUse(_ message: String) -> TransportError { .init(.addressInUse, message) }
    public static func certificateRejected(_ message: String) -> TransportError { .init(.certificateRejected, message) }
    public static func hostnameMismatch(_ message: String) -> TransportError { .init(.hostnameMismatch, message) }
    public static func invalidCredentials(_ message: String) -> TransportError { .init(.invalidCredentials, message) }
    public static func handshakeFailed(_ message: String) -> TransportError { .init(.handshakeFailed, message) }
    public static func protocolViolation(_ message: String) -> TransportError { .init(.protocolViolation, message) }
    public static func truncated(_ message: String) -> TransportError { .init(.truncated, message) }
    public static func connectionClosed(_ message: String) -> TransportError { .init(.connectionClosed, message) }
    public static func messageTooLarge(_ message: String) -> TransportError { .init(.messageTooLarge, message) }
    public static func invalidArgument(_ message: String) -> TransportError { .init(.invalidArgument, message) }
    public static func notSupported(_ message: String) -> TransportError { .init(.notSupported, message) }
    public static func io(_ message: String) -> TransportError { .init(.io, message) }
}

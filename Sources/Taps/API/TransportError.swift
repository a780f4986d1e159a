/// An error from the transport system: a code that programs switch on, and a message that says what
/// happened and, where it helps, what to do.
///
/// A struct with static codes rather than an enum, so new kinds of error do not break callers.
public struct TransportError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of error happened; compare against the static codes.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// No protocol stack satisfies the required properties; the message names the unmet one.
        public static let noCandidate = Code(rawValue: "noCandidate")
        /// The remote endpoint's name did not resolve to an address.
        public static let resolutionFailed = Code(rawValue: "resolutionFailed")
        /// The peer refused the connection (a TCP RST or SCTP ABORT in answer to the first packet, or an ICMP unreachable).
        public static let connectionRefused = Code(rawValue: "connectionRefused")
        /// The peer or the network ended the connection abruptly (TCP RST, SCTP ABORT).
        public static let connectionReset = Code(rawValue: "connectionReset")
        /// Establishment or the connection took longer than the configured timeout, or the peer stopped answering.
        public static let timedOut = Code(rawValue: "timedOut")
        /// The local endpoint's address and port are already bound.
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
        /// The operation needs an open connection, and this one is closed.
        public static let connectionClosed = Code(rawValue: "connectionClosed")
        /// The application aborted the connection (RFC 9622 section 10: the `connectionError` event
        /// of a local Abort).
        public static let aborted = Code(rawValue: "aborted")
        /// The message is larger than the connection can send (RFC 9622 section 9.1.2's singular transmission limit).
        public static let messageTooLarge = Code(rawValue: "messageTooLarge")
        /// A property, parameter or file given to the SDK is invalid; the message names it.
        public static let invalidArgument = Code(rawValue: "invalidArgument")
        /// The operation or property is not supported by the selected protocol stack.
        public static let notSupported = Code(rawValue: "notSupported")
        /// The operating system reported an error on a socket or file.
        public static let io = Code(rawValue: "io")
    }

    /// The kind of error.
    public let code: Code
    /// What happened, in words, and where it helps, what to do.
    public let message: String

    /// An error of `code` with `message`.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// `code: message`.
    public var description: String { "\(code): \(message)" }

    /// A ``Code/noCandidate`` error.
    public static func noCandidate(_ message: String) -> TransportError { .init(.noCandidate, message) }
    /// A ``Code/resolutionFailed`` error.
    public static func resolutionFailed(_ message: String) -> TransportError { .init(.resolutionFailed, message) }
    /// A ``Code/connectionRefused`` error.
    public static func connectionRefused(_ message: String) -> TransportError { .init(.connectionRefused, message) }
    /// A ``Code/connectionReset`` error.
    public static func connectionReset(_ message: String) -> TransportError { .init(.connectionReset, message) }
    /// A ``Code/timedOut`` error.
    public static func timedOut(_ message: String) -> TransportError { .init(.timedOut, message) }
    /// A ``Code/addressInUse`` error.
    public static func addressInUse(_ message: String) -> TransportError { .init(.addressInUse, message) }
    /// A ``Code/certificateRejected`` error.
    public static func certificateRejected(_ message: String) -> TransportError { .init(.certificateRejected, message) }
    /// A ``Code/hostnameMismatch`` error.
    public static func hostnameMismatch(_ message: String) -> TransportError { .init(.hostnameMismatch, message) }
    /// A ``Code/invalidCredentials`` error.
    public static func invalidCredentials(_ message: String) -> TransportError { .init(.invalidCredentials, message) }
    /// A ``Code/handshakeFailed`` error.
    public static func handshakeFailed(_ message: String) -> TransportError { .init(.handshakeFailed, message) }
    /// A ``Code/protocolViolation`` error.
    public static func protocolViolation(_ message: String) -> TransportError { .init(.protocolViolation, message) }
    /// A ``Code/truncated`` error.
    public static func truncated(_ message: String) -> TransportError { .init(.truncated, message) }
    /// A ``Code/connectionClosed`` error.
    public static func connectionClosed(_ message: String) -> TransportError { .init(.connectionClosed, message) }
    /// A ``Code/messageTooLarge`` error.
    public static func messageTooLarge(_ message: String) -> TransportError { .init(.messageTooLarge, message) }
    /// A ``Code/invalidArgument`` error.
    public static func invalidArgument(_ message: String) -> TransportError { .init(.invalidArgument, message) }
    /// A ``Code/notSupported`` error.
    public static func notSupported(_ message: String) -> TransportError { .init(.notSupported, message) }
    /// A ``Code/io`` error.
    public static func io(_ message: String) -> TransportError { .init(.io, message) }
}

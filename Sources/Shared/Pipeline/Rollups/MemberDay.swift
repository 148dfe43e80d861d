/// The members who came on one local day, to one space or to any: the compacted form of the members' rows that
/// unique visitors and top members read, so that a year of them is a few hundred rows instead of millions.
///
/// Members are numbered densely as they first appear (`member_ordinals`), and a day is a bitmap over those numbers,
/// bit `n % 8` of byte `n / 8` set when member `n` came, with the visits beyond the first of those who came more
/// than once. Unique visitors of several days are the bits set in any of them; a member's visits over a range, the
/// sum of their bits and repeats. Both are exact.
public struct MemberDay: Sendable, Equatable {
    /// The presence bitmap, as long as the highest ordinal present needs.
    public private(set) var presence: [UInt8]
    /// Visits beyond the first, by ordinal, for members who came more than once.
    public private(set) var repeats: [Int32: Int32]

    public init() {
        presence = []
        repeats = [:]
    }

    /// A day as stored: its bitmap and its repeats in `encodedRepeats`' form.
    public init(presence: [UInt8], encodedRepeats: [UInt8]) throws(MemberDayError) {
        var repeats: [Int32: Int32] = [:]
        try Self.forEachRepeat(in: encodedRepeats, of: presence) { repeats[$0] = $1 }
        self.presence = presence
        self.repeats = repeats
    }

    /// Records `visits` (at least one) of member `ordinal`.
    public mutating func add(ordinal: Int32, visits: Int32) {
        guard visits > 0, ordinal >= 0 else { return }
        let index = Int(ordinal) >> 3
        let bit = UInt8(1) << UInt8(ordinal & 7)
        if index >= presence.count { presence.append(contentsOf: repeatElement(0, count: index + 1 - presence.count)) }
        let extra = presence[index] & bit == 0 ? visits - 1 : visits
        presence[index] |= bit
        if extra > 0 { repeats[ordinal, default: 0] += extra }
    }

    /// Adds every member and visit of `other`.
    public mutating func formUnion(_ other: MemberDay) {
        other.forEachMember { add(ordinal: $0, visits: $1) }
    }

    /// Whether member `ordinal` came.
    public func contains(_ ordinal: Int32) -> Bool {
        let index = Int(ordinal) >> 3
        return ordinal >= 0 && index < presence.count && presence[index] & (UInt8(1) << UInt8(ordinal & 7)) != 0
    }

    /// The number of members who came.
    public var memberCount: Int { Self.count(presence) }

    /// Calls `body` with each member's ordinal and visits, in ordinal order.
    public func forEachMember(_ body: (Int32, Int32) -> Void) {
        for (index, byte) in presence.enumerated() where byte != 0 {
            var bits = byte
            while bits != 0 {
                let ordinal = Int32(index << 3 + bits.trailingZeroBitCount)
                body(ordinal, 1 + (repeats[ordinal] ?? 0))
                bits &= bits - 1
            }
        }
    }

    /// Adds each member's visits to `visits`, indexed by number, which must hold every number present: a year of days
    /// is counted in a few milliseconds, a bit at a time.
    public func addVisits(to visits: inout [Int32]) {
        Self.addPresence(presence, to: &visits)
        for (ordinal, extra) in repeats { visits[Int(ordinal)] += extra }
    }

    /// Sets every bit of `other` in `bitmap` (a union of days' members, which `memberCount` of the result counts).
    public static func union(_ bitmap: inout [UInt8], _ other: [UInt8]) {
        if other.count > bitmap.count { bitmap.append(contentsOf: repeatElement(0, count: other.count - bitmap.count)) }
        for index in other.indices { bitmap[index] |= other[index] }
    }

    /// The repeats as stored: for each member in ordinal order, the distance from the previous one's ordinal and the
    /// visits beyond the first, each as a LEB128 varint. A few bytes each, as most members come once a day.
    public var encodedRepeats: [UInt8] {
        var bytes: [UInt8] = []
        var previous: Int32 = -1
        for ordinal in repeats.keys.sorted() {
            Self.appendVarint(UInt32(ordinal - previous), to: &bytes)
            Self.appendVarint(UInt32(repeats[ordinal] ?? 0), to: &bytes)
            previous = ordinal
        }
        return bytes
    }

    private static func appendVarint(_ value: UInt32, to bytes: inout [UInt8]) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(value & 0x7F) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    /// Calls `body` with each member's number and visits beyond the first, in repeats as stored (`encodedRepeats`) for
    /// the day whose bitmap is `presence`, without building a dictionary of them: a report reads hundreds of days'
    /// repeats. Throws at a repeat of a member the bitmap does not hold, so `body` only sees numbers within it.
    public static func forEachRepeat(
        in bytes: [UInt8], of presence: [UInt8], _ body: (Int32, Int32) -> Void
    ) throws(MemberDayError) {
        var position = 0
        func varint() throws(MemberDayError) -> UInt32 {
            var value: UInt32 = 0
            var shift: UInt32 = 0
            while position < bytes.count, shift < 35 {
                let byte = bytes[position]
                position += 1
                value |= UInt32(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return value }
                shift += 7
            }
            throw MemberDayError()
        }
        var ordinal: Int64 = -1
        while position < bytes.count {
            let distance = try varint()
            ordinal += Int64(distance)
            let extra = try varint()
            guard distance > 0, ordinal <= Int64(Int32.max), extra <= UInt32(Int32.max) else { throw MemberDayError() }
            let index = Int(ordinal) >> 3
            guard index < presence.count, presence[index] & (UInt8(1) << UInt8(ordinal & 7)) != 0 else {
                throw MemberDayError()
            }
            body(Int32(ordinal), Int32(extra))
        }
    }

    /// The number of bits set in `bitmap`.
    public static func count(_ bitmap: [UInt8]) -> Int {
        bitmap.reduce(0) { $0 + $1.nonzeroBitCount }
    }

    /// Adds one visit of each member whose bit `bitmap` sets to `visits`, indexed by number, which must hold every
    /// number present.
    public static func addPresence(_ bitmap: [UInt8], to visits: inout [Int32]) {
        visits.withUnsafeMutableBufferPointer { visits in
            for (index, byte) in bitmap.enumerated() where byte != 0 {
                var bits = byte
                while bits != 0 {
                    visits[index << 3 + bits.trailingZeroBitCount] += 1
                    bits &= bits - 1
                }
            }
        }
    }
}

/// A stored member day that cannot be read: the database holds what this program did not write.
public struct MemberDayError: Error, Sendable, Equatable {
    public init() {}
}

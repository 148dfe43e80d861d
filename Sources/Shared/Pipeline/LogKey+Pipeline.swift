import Basics

extension LogKey {
    public static let rejectionReason = "event.rejection_reason"
    public static let batchSize = "batch.size"
    public static let batchCounted = "batch.counted"
    public static let batchDuplicates = "batch.duplicates"
    public static let schemaVersion = "schema.version"
    public static let zonesConfigured = "zones.configured"
    public static let zonesRecorded = "zones.recorded"
    public static let databaseFault = "db.fault"
    public static let waited = "db.waited"
}

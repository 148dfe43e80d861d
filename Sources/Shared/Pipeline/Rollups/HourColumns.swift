/// The columns of the `visits_local_day` rollup that hold a local day's visits by hour, `h00` to `h23`, named in
/// one place for the consumer that writes them and the report API that reads them.
///
/// One row per zone, local day and space holds the day's 24 hours as columns, not as 24 rows: folding a
/// batch then writes a third of the rows it would, and writing rows is what a fold costs.
public enum HourColumns {
    /// `h00` to `h23`, in hour order.
    public static let names: [String] = (0..<24).map { $0 < 10 ? "h0\($0)" : "h\($0)" }

    /// `names` joined with `, `, for column lists.
    public static let list = names.joined(separator: ", ")
}

import Foundation
import Hummingbird

/// The dashboard served at `/`: a page, its script and style (resources of this target), and Chart.js, read from the
/// file Debian's `libjs-chart.js` installs, so that nothing is fetched from another server and no build step is
/// needed. The script and style are named in the page with their content's hash, so that browsers keep them for a
/// year and fetch them again only when they change; the page itself is revalidated on every load.
public struct DashboardAssets: Sendable {
    /// Debian's Chart.js (`libjs-chart.js`), the default of `DASHBOARD_CHART_JS`.
    public static let debianChartLibrary = "/usr/share/javascript/chart.js/chart.min.js"

    struct Asset: Sendable {
        var body: ByteBuffer
        var contentType: String
        /// A hash of the content, the asset's `ETag` and its version in the page's links.
        var version: String
    }

    let page: Asset
    /// `app.js`, `app.css` and `chart.js` when its file was readable.
    let files: [String: Asset]

    /// Reads the page, script and style from the bundle and Chart.js from `chartLibrary`. A missing Chart.js leaves
    /// the page without its chart (it says so), not without its tables.
    public static func load(chartLibrary: String = debianChartLibrary) -> DashboardAssets {
        func resource(_ name: String, _ type: String) -> Data {
            guard let url = Bundle.module.url(forResource: name, withExtension: type, subdirectory: "Dashboard"),
                let data = try? Data(contentsOf: url)
            else { fatalError("Dashboard/\(name).\(type) is missing from the report API's resource bundle") }
            return data
        }
        var files = [
            "app.js": Asset(resource("app", "js"), contentType: "text/javascript; charset=utf-8"),
            "app.css": Asset(resource("app", "css"), contentType: "text/css; charset=utf-8"),
        ]
        if let chart = FileManager.default.contents(atPath: chartLibrary) {
            files["chart.js"] = Asset(chart, contentType: "text/javascript; charset=utf-8")
        }
        var html = String(decoding: resource("index", "html"), as: UTF8.self)
        for name in ["app.js", "app.css", "chart.js"] {
            html = html.replacingOccurrences(of: "{{\(name)}}", with: files[name]?.version ?? "missing")
        }
        return DashboardAssets(
            page: Asset(Data(html.utf8), contentType: "text/html; charset=utf-8"), files: files)
    }

    /// Whether Chart.js was found.
    public var hasChartLibrary: Bool { files["chart.js"] != nil }

    /// The page: revalidated on each load, and allowed to load scripts, styles and data from this server only.
    func pageResponse(to request: Request) -> Response {
        var response = page.response(to: request, cacheControl: "no-cache")
        response.headers[.contentSecurityPolicy] =
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        return response
    }

    /// A script or style, kept a year by browsers: its links carry its version.
    func fileResponse(_ name: String, to request: Request) -> Response {
        guard let asset = files[name] else { return Response(status: .notFound) }
        return asset.response(to: request, cacheControl: "public, max-age=31536000, immutable")
    }
}

extension DashboardAssets.Asset {
    init(_ data: Data, contentType: String) {
        // FNV-1a: a stable content hash for versions and validators, not a security measure.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in data {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        self.init(body: ByteBuffer(bytes: data), contentType: contentType, version: String(hash, radix: 16))
    }

    /// The asset, or 304 when the request holds its version.
    func response(to request: Request, cacheControl: String) -> Response {
        let tag = "\"\(version)\""
        let headers: HTTPFields = [.eTag: tag, .cacheControl: cacheControl, .contentType: contentType]
        if request.headers[.ifNoneMatch]?.split(separator: ",").contains(where: {
            $0.trimmingCharacters(in: .whitespaces) == tag
        }) == true {
            return Response(status: .notModified, headers: headers)
        }
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: body))
    }
}

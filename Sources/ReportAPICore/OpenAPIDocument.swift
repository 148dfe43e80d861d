/// The OpenAPI 3 document of every path of the report API, served at `/openapi.json`. A test checks it against
/// the router's routes and validates it against the OpenAPI schema.
enum OpenAPIDocument {
    static let json = #"""
        {
          "openapi": "3.0.3",
          "info": {
            "title": "Coworking report API",
            "version": "1.0.0",
            "description": "Read-only reports over the pre-aggregated rollups of the coworking analytics pipeline. The first four paths keep the shapes of the legacy Flask service."
          },
          "paths": {
            "/health_check": {
              "get": {
                "summary": "Liveness: the process answers; the database is not touched.",
                "responses": {"200": {"description": "ok", "content": {"text/plain": {"schema": {"type": "string", "enum": ["ok"]}}}}}
              }
            },
            "/readiness_check": {
              "get": {
                "summary": "Readiness: the database answers within 2 seconds.",
                "responses": {
                  "200": {"description": "ok", "content": {"text/plain": {"schema": {"type": "string", "enum": ["ok"]}}}},
                  "503": {"description": "failed", "content": {"text/plain": {"schema": {"type": "string", "enum": ["failed"]}}}}
                }
              }
            },
            "/api/reports/daily_usage": {
              "get": {
                "summary": "Visits per day in a time zone; days without visits are left out.",
                "parameters": [
                  {"$ref": "#/components/parameters/from"}, {"$ref": "#/components/parameters/to"},
                  {"$ref": "#/components/parameters/tz"}, {"$ref": "#/components/parameters/space"}
                ],
                "responses": {
                  "200": {
                    "description": "Visits keyed by day YYYY-MM-DD, ascending.",
                    "content": {"application/json": {"schema": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1}},
                      "example": {"2023-02-07": 40, "2023-02-08": 202}}}
                  },
                  "400": {"$ref": "#/components/responses/BadQuery"},
                  "304": {"$ref": "#/components/responses/NotModified"},
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "503": {"$ref": "#/components/responses/Unavailable"}
                }
              }
            },
            "/api/reports/user_visits": {
              "get": {
                "summary": "Visits per user with at least one visit, by ascending user id; every user when no page is asked for.",
                "parameters": [
                  {"name": "limit", "in": "query", "required": false, "description": "Users per page.", "schema": {"type": "integer", "minimum": 1, "maximum": 10000}},
                  {"name": "after", "in": "query", "required": false, "description": "Only users with a greater id.", "schema": {"type": "integer", "minimum": 0, "maximum": 2147483647}}
                ],
                "responses": {
                  "200": {
                    "description": "Users keyed by id.",
                    "content": {"application/json": {"schema": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/UserVisits"}},
                      "example": {"1": {"joined_at": "2023-01-20 03:23:39.757813", "visits": 6}}}}
                  },
                  "400": {"$ref": "#/components/responses/BadQuery"},
                  "304": {"$ref": "#/components/responses/NotModified"},
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "503": {"$ref": "#/components/responses/Unavailable"}
                }
              }
            },
            "/api/reports/hourly_usage": {
              "get": {
                "summary": "Visits by local hour of the day over a range of days: all 24 hours.",
                "parameters": [
                  {"$ref": "#/components/parameters/from"}, {"$ref": "#/components/parameters/to"},
                  {"$ref": "#/components/parameters/tz"}, {"$ref": "#/components/parameters/space"}
                ],
                "responses": {
                  "200": {
                    "description": "Visits keyed by hour 00 to 23.",
                    "content": {"application/json": {"schema": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}}}
                  },
                  "400": {"$ref": "#/components/responses/BadQuery"},
                  "304": {"$ref": "#/components/responses/NotModified"},
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "503": {"$ref": "#/components/responses/Unavailable"}
                }
              }
            },
            "/api/reports/summary": {
              "get": {
                "summary": "Totals and freshness.",
                "responses": {
                  "200": {"description": "Counted check-ins, users with a visit, first and last check-in, last fold.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Summary"}}}},
                  "304": {"$ref": "#/components/responses/NotModified"},
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "503": {"$ref": "#/components/responses/Unavailable"}
                }
              }
            },
            "/metrics": {
              "get": {
                "summary": "Prometheus metrics.",
                "responses": {"200": {"description": "Prometheus text format.", "content": {"text/plain": {"schema": {"type": "string"}}}}}
              }
            },
            "/openapi.json": {
              "get": {
                "summary": "This document.",
                "responses": {"200": {"description": "OpenAPI 3 document.", "content": {"application/json": {"schema": {"type": "object"}}}}}
              }
            }
          },
          "components": {
            "parameters": {
              "from": {"name": "from", "in": "query", "required": false, "description": "First day, inclusive, in tz; absent, the first day with data.", "schema": {"type": "string", "format": "date"}},
              "to": {"name": "to", "in": "query", "required": false, "description": "Last day, inclusive, in tz; at most 10 years after from. In a zone outside REPORT_TIMEZONES (answered from 15-minute rows), from..to may span at most 1096 days of data, an open end counting from the first or to the last day with data; a longer range answers 400.", "schema": {"type": "string", "format": "date"}},
              "tz": {"name": "tz", "in": "query", "required": false, "description": "IANA time zone; default REPORT_TIMEZONE, else UTC.", "schema": {"type": "string", "example": "Asia/Kolkata"}},
              "space": {"name": "space", "in": "query", "required": false, "description": "One space; all when absent.", "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}}
            },
            "schemas": {
              "UserVisits": {
                "type": "object", "required": ["joined_at", "visits"],
                "properties": {
                  "joined_at": {"type": "string", "nullable": true, "description": "UTC, YYYY-MM-DD HH:MM:SS.ffffff (no fraction when zero)."},
                  "visits": {"type": "integer", "minimum": 1}
                }
              },
              "Summary": {
                "type": "object", "required": ["checkins", "users", "first_checkin_at", "last_checkin_at", "last_folded_at"],
                "properties": {
                  "checkins": {"type": "integer", "minimum": 0},
                  "users": {"type": "integer", "minimum": 0},
                  "first_checkin_at": {"type": "string", "format": "date-time", "nullable": true},
                  "last_checkin_at": {"type": "string", "format": "date-time", "nullable": true},
                  "last_folded_at": {"type": "string", "format": "date-time", "nullable": true}
                }
              },
              "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
            },
            "responses": {
              "BadQuery": {"description": "A bad query; the message names the parameter.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
              "Unavailable": {"description": "The database is unavailable or busy (a full pool, a query past its statement timeout); Retry-After says when to try again.", "headers": {"Retry-After": {"schema": {"type": "integer"}}}, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
              "NotModified": {"description": "The rollups are still at the version that If-None-Match names (the ETag), or unchanged since If-Modified-Since. Every report answer carries ETag (the rollups' version), Last-Modified (the commit time of the newest fold) and Cache-Control: no-cache.", "headers": {"ETag": {"schema": {"type": "string"}}, "Last-Modified": {"schema": {"type": "string"}}}},
              "Unauthorized": {"description": "With API_TOKENS_FILE set: no bearer token, or one not listed.", "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            },
            "securitySchemes": {
              "bearer": {"type": "http", "scheme": "bearer", "description": "Needed on /api/ paths when the API runs with API_TOKENS_FILE."}
            }
          }
        }
        """#
}

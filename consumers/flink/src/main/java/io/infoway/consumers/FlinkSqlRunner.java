package io.infoway.consumers;

import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.time.LocalDateTime;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

import org.apache.flink.configuration.Configuration;
import org.apache.flink.table.api.EnvironmentSettings;
import org.apache.flink.table.api.TableEnvironment;
import org.apache.flink.table.api.TableResult;
import org.apache.flink.types.Row;
import org.apache.flink.util.CloseableIterator;

/**
 * Runs SQL files on an in-process Flink (a local MiniCluster behind the Table API) and prints every
 * row of every query as one JSON line, so a test can compare what Flink read with what was sent.
 *
 * <p>Each argument is a SQL file (job i is the i-th), run in a fresh table environment of the same JVM, statements each
 * ending with ";" at the end of a line. DDL runs as it is; every SELECT of every file is submitted,
 * then each prints {"job": i, "query": j, "row": {column: value}} per row, then {"job": i,
 * "query": j, "done": rows}. A failing statement prints {"job": i, "query": j, "error": "..."} and the
 * run goes on with the next file, so one broken snippet never hides the others. Values keep their
 * exactness: DECIMAL as its plain string, TIMESTAMP as ISO-8601, TIMESTAMP_LTZ as an ISO-8601 instant,
 * ROW and ARRAY as JSON arrays.
 */
public final class FlinkSqlRunner {
    private FlinkSqlRunner() {}

    public static void main(String[] args) throws Exception {
        Configuration configuration = new Configuration();
        configuration.setString("parallelism.default", "1");
        configuration.setString("table.local-time-zone", "UTC");
        EnvironmentSettings settings =
                EnvironmentSettings.newInstance().inStreamingMode().withConfiguration(configuration).build();
        // Every query is submitted first and read afterwards: the jobs start their clusters and read
        // their topics side by side, and the rows are still printed one query after another.
        List<Submitted> submitted = new ArrayList<>();
        for (int file = 0; file < args.length; file++) {
            int query = 0;
            try {
                // One environment per file: each file's tables stand alone (raw and confluent both say trades).
                TableEnvironment tables = TableEnvironment.create(settings);
                for (String statement : statements(Path.of(args[file]))) {
                    if (isQuery(statement)) {
                        submitted.add(new Submitted(file, query++, tables.executeSql(statement)));
                    } else {
                        tables.executeSql(statement);
                    }
                }
            } catch (Exception error) {
                emitError(file, query, error);
            }
        }
        for (Submitted job : submitted) {
            try {
                printRows(job);
            } catch (Exception error) {
                emitError(job.file(), job.query(), error);
            }
        }
        System.exit(0);
    }

    private record Submitted(int file, int query, TableResult result) {}

    private static void emitError(int file, int query, Exception error) {
        emit("{\"job\":" + file + ",\"query\":" + query + ",\"error\":" + quote(describe(error)) + "}");
    }

    private static List<String> statements(Path path) throws java.io.IOException {
        List<String> found = new ArrayList<>();
        StringBuilder current = new StringBuilder();
        for (String line : Files.readAllLines(path, StandardCharsets.UTF_8)) {
            String trimmed = line.strip();
            if (trimmed.startsWith("--") && current.length() == 0) {
                continue;
            }
            current.append(line).append('\n');
            if (trimmed.endsWith(";")) {
                String text = current.toString().strip();
                found.add(text.substring(0, text.length() - 1));
                current.setLength(0);
            }
        }
        if (!current.toString().isBlank()) {
            found.add(current.toString().strip());
        }
        return found;
    }

    private static boolean isQuery(String statement) {
        String head = statement.stripLeading().toUpperCase(Locale.ROOT);
        return head.startsWith("SELECT") || head.startsWith("WITH");
    }

    private static void printRows(Submitted job) throws Exception {
        List<String> columns = job.result().getResolvedSchema().getColumnNames();
        String place = "{\"job\":" + job.file() + ",\"query\":" + job.query();
        long rows = 0;
        try (CloseableIterator<Row> iterator = job.result().collect()) {
            while (iterator.hasNext()) {
                Row row = iterator.next();
                StringBuilder json = new StringBuilder("{");
                for (int i = 0; i < columns.size(); i++) {
                    json.append(i == 0 ? "" : ",").append(quote(columns.get(i))).append(':');
                    json.append(value(row.getField(i)));
                }
                emit(place + ",\"row\":" + json + "}}");
                rows++;
            }
        }
        emit(place + ",\"done\":" + rows + "}");
    }

    private static String value(Object field) {
        if (field == null) {
            return "null";
        }
        if (field instanceof Boolean || field instanceof Byte || field instanceof Short
                || field instanceof Integer || field instanceof Long) {
            return field.toString();
        }
        if (field instanceof BigDecimal decimal) {
            return quote(decimal.toPlainString());
        }
        if (field instanceof Instant || field instanceof LocalDateTime) {
            return quote(field.toString());
        }
        if (field instanceof Row nested) {
            StringBuilder json = new StringBuilder("[");
            for (int i = 0; i < nested.getArity(); i++) {
                json.append(i == 0 ? "" : ",").append(value(nested.getField(i)));
            }
            return json.append(']').toString();
        }
        if (field instanceof Object[] items) {
            StringBuilder json = new StringBuilder("[");
            for (int i = 0; i < items.length; i++) {
                json.append(i == 0 ? "" : ",").append(value(items[i]));
            }
            return json.append(']').toString();
        }
        return quote(field.toString());
    }

    private static String describe(Throwable error) {
        StringBuilder text = new StringBuilder();
        for (Throwable cause = error; cause != null; cause = cause.getCause()) {
            text.append(text.length() == 0 ? "" : " <- ").append(cause.getClass().getSimpleName())
                    .append(": ").append(cause.getMessage());
        }
        return text.toString();
    }

    private static String quote(String text) {
        StringBuilder json = new StringBuilder("\"");
        for (char c : text.toCharArray()) {
            switch (c) {
                case '"' -> json.append("\\\"");
                case '\\' -> json.append("\\\\");
                case '\n' -> json.append("\\n");
                case '\r' -> json.append("\\r");
                case '\t' -> json.append("\\t");
                default -> {
                    if (c < 0x20) {
                        json.append(String.format("\\u%04x", (int) c));
                    } else {
                        json.append(c);
                    }
                }
            }
        }
        return json.append('"').toString();
    }

    private static void emit(String line) {
        System.out.println(line);
        System.out.flush();
    }
}

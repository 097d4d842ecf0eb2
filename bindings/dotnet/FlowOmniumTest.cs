// The .NET binding against omnium-sim: every call, the exception types with their
// messages, events, status, dead jobs and retry, closing while other threads wait.
// Usage: mono FlowOmniumTest.exe <path to omnium-sim>   (libflow_omnium.so on LD_LIBRARY_PATH)
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using System.Threading;
using FlowOmnium;

static class FlowOmniumTest
{
    static int passed, failed;
    static string simUrl;

    static void Check(bool ok, string what)
    {
        if (ok) { passed++; return; }
        failed++;
        Console.Error.WriteLine("FAIL " + what + "  (at " + new StackTrace(1, true).GetFrame(0) + ")");
    }

    // Runs body expecting exception E; returns its message ("" if it was not thrown).
    static string Throws<E>(Action body, string what) where E : Exception
    {
        try
        {
            body();
        }
        catch (E e)
        {
            passed++;
            return e.Message;
        }
        catch (Exception e)
        {
            failed++;
            Console.Error.WriteLine("FAIL " + what + ": threw " + e.GetType().Name + ": " + e.Message);
            return "";
        }
        failed++;
        Console.Error.WriteLine("FAIL " + what + ": did not throw");
        return "";
    }

    static string Http(string method, string path, string body)
    {
        var req = (HttpWebRequest)WebRequest.Create(simUrl + path);
        req.Method = method;
        req.Proxy = null;
        req.Timeout = 10000;
        if (body != null)
        {
            byte[] data = Encoding.UTF8.GetBytes(body);
            req.ContentType = "application/json";
            req.ContentLength = data.Length;
            using (var s = req.GetRequestStream()) s.Write(data, 0, data.Length);
        }
        try
        {
            using (var resp = (HttpWebResponse)req.GetResponse())
            using (var r = new StreamReader(resp.GetResponseStream()))
                return r.ReadToEnd();
        }
        catch (WebException e)
        {
            var resp = e.Response as HttpWebResponse;
            if (resp != null && resp.StatusCode == HttpStatusCode.NotFound) return null;
            throw;
        }
    }

    static string SimOrder(string id) { return Http("GET", "/__sim/orders/" + id, null); }

    static string Config(string dir, string extra)
    {
        return "{\"database_path\": \"" + Path.Combine(dir, "pos.db") + "\", \"store_id\": \"oslo-1\"," +
               " \"market_id\": \"NOR\", \"currency\": \"NOK\", \"terminal_id\": \"t01\", " + extra +
               " \"omnium\": {\"base_url\": \"" + simUrl + "\", \"client_id\": \"sim-client\"," +
               " \"client_secret\": \"sim-secret\", \"timeout_ms\": 2000}," +
               " \"sync\": {\"retry_initial_ms\": 50, \"retry_max_ms\": 400, \"pull_interval_ms\": 60000}}";
    }

    static string NewDir()
    {
        string dir = Path.Combine(Path.GetTempPath(), "fo-dotnet-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        // Owner-only: the library refuses a directory every account can write.
        Process.Start("chmod", "700 " + dir).WaitForExit();
        return dir;
    }

    static string Sale(string id, string tx = null)
    {
        return "{\"id\": \"" + id + "\", \"created_at\": \"2026-11-28T10:15:00+01:00\"," +
               " \"lines\": [{\"line_id\": \"1\", \"sku\": \"NET-SKU\", \"name\": \"T-shirt\", \"quantity\": 2," +
               " \"unit_price\": 19950, \"tax_rate\": 25}]," +
               " \"payments\": [{\"id\": \"P1\", \"method\": \"Card\", \"amount\": 39900, \"transaction_id\": \"" +
               (tx ?? "tx-" + id) + "\"}]}";
    }

    static int Main(string[] args)
    {
        if (args.Length != 1)
        {
            Console.Error.WriteLine("usage: FlowOmniumTest.exe <omnium-sim>");
            return 2;
        }
        var sim = new Process();
        sim.StartInfo = new ProcessStartInfo(args[0], "--port 0")
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
        };
        sim.Start();
        string line = sim.StandardOutput.ReadLine() ?? "";
        const string prefix = "omnium-sim listening on ";
        if (!line.StartsWith(prefix))
        {
            Console.Error.WriteLine("omnium-sim said: " + line);
            sim.Kill();
            return 2;
        }
        simUrl = line.Substring(prefix.Length).Trim();
        var dirs = new List<string>();
        try
        {
            Run(dirs);
            CatalogReads(args[0], dirs);
        }
        catch (Exception e)
        {
            failed++;
            Console.Error.WriteLine("FAIL unexpected exception: " + e);
        }
        finally
        {
            Library.SetLogCallback(null, 0);
            sim.Kill();
            sim.WaitForExit();
            foreach (var d in dirs) Directory.Delete(d, true);
        }
        Console.WriteLine(passed + " passed, " + failed + " failed");
        return failed == 0 ? 0 : 1;
    }

    static string Field(string json, string key)
    {
        var m = Regex.Match(json, "\"" + key + "\":\"([^\"]*)\"");
        return m.Success ? m.Groups[1].Value : null;
    }

    // Catalog reads on a real catalog: a second simulator serving generated products.
    static void CatalogReads(string simExe, List<string> dirs)
    {
        var cat = new Process();
        cat.StartInfo = new ProcessStartInfo(simExe, "--port 0 --catalog 30 --seed 7")
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
        };
        cat.Start();
        try
        {
            string line = cat.StandardOutput.ReadLine() ?? "";
            Check(line.StartsWith("omnium-sim listening on "), "catalog simulator: " + line);
            string url = line.Substring("omnium-sim listening on ".Length).Trim();
            string dir = NewDir();
            dirs.Add(dir);
            using (var c = new Client(Config(dir, "").Replace(simUrl, url)))
            {
                bool arrived = false;
                for (int i = 0; i < 400 && !arrived; i++)
                {
                    arrived = !c.SearchProducts("{\"limit\": 1}").Contains("\"total\":0") &&
                              c.Categories() != "{\"items\":[]}" && c.Status().Contains("\"pulling\":false");
                    if (!arrived) Thread.Sleep(50);
                }
                Check(arrived, "the generated catalog arrived");
                string listed = c.SearchProducts("{\"limit\": 100}");
                string sku = Field(listed, "sku");
                Check(sku != null, listed);
                string product = c.Product(sku);
                Check(Field(product, "sku") == sku && product.Contains("\"active\":true") &&
                      product.Contains("\"currency\":\"NOK\""), product);
                var cm = Regex.Match(product, "\"category_ids\":\\[\"([^\"]*)\"");
                Check(cm.Success, product);
                string category = cm.Groups[1].Value;
                Check(c.Categories().Contains("\"id\":\"" + category + "\""), c.Categories());
                string inCategory = c.SearchProducts("{\"category_id\": \"" + category + "\", \"limit\": 100}");
                Check(inCategory.Contains("\"sku\":\"" + sku + "\""), inCategory);
                string word = Field(product, "name").Split(' ').Select(w => w.TrimEnd(','))
                    .First(w => w.Length >= 3);
                Check(c.SearchProducts("{\"text\": \"" + word + "\", \"limit\": 100}").Contains("\"sku\":\"" + sku + "\""),
                      "search " + word);
                Check(Field(c.SearchProducts("{\"text\": \"" + sku + "\"}"), "sku") == sku, "by SKU");
                string ean = Field(product, "ean");
                if (ean != null)
                    Check(Field(c.SearchProducts("{\"text\": \"" + ean + "\"}"), "sku") == sku, "by EAN " + ean);
                string brand = Field(product, "brand");
                Check(c.Brands().Contains("\"" + brand + "\""), c.Brands());
                Check(c.SearchProducts("{\"brand\": \"" + brand + "\", \"limit\": 100}").Contains("\"sku\":\"" + sku + "\""),
                      "brand " + brand);
            }
        }
        finally
        {
            cat.Kill();
            cat.WaitForExit();
        }
    }

    static void Run(List<string> dirs)
    {
        int logLines = 0;
        bool secretLogged = false;
        Library.SetLogCallback((level, message) =>
        {
            if (message.Contains("sim-secret") || level < 1 || level > 5) secretLogged = true;
            if (Interlocked.Increment(ref logLines) == 1) throw new Exception("swallowed by the binding");
        }, 5);

        Check(Library.ResultName(4) == "FO_CONFLICT", "result name");
        Check(Library.ResultName(4242) == "FO_UNKNOWN", "unknown code");
        Check(Library.Version.Split('.').Length == 3, "version " + Library.Version);

        string dir = NewDir();
        dirs.Add(dir);
        string cfg = Config(dir, "");

        // Opening.
        string msg = Throws<ConfigException>(() => new Client("{\"store_id\": \"oslo-1\"}"), "config");
        Check(msg.Contains("omnium"), msg);
        msg = Throws<ConfigException>(() => new Client(cfg.Replace(simUrl, "http://api.omnium.no")), "http");
        Check(msg.Contains("https") && !msg.Contains("sim-secret"), msg);
        Throws<ArgumentNullException>(() => new Client(null), "null config");
        Throws<ArgumentException>(() => new Client("{\0}"), "NUL");

        using (var c = new Client(cfg))
        {
            msg = Throws<StorageException>(() => new Client(cfg), "second open");
            Check(msg.Contains("in use"), msg);

            // Recording.
            c.RecordSale(Sale("NET-S1"));
            c.RecordSale(Sale("NET-S1"));
            try
            {
                c.RecordSale(Sale("NET-S1", "tx-other"));
                Check(false, "conflict not thrown");
            }
            catch (ConflictException e)
            {
                Check(e.Code == ResultCode.Conflict && e.CodeName == "FO_CONFLICT" && e.Message.Contains("NET-S1"), e.ToString());
            }
            msg = Throws<InvalidInputException>(() => c.RecordSale(
                "{\"id\": \"NET-S2\", \"created_at\": \"2026-11-28T10:15:00+01:00\"," +
                " \"lines\": [{\"line_id\": \"1\", \"sku\": \"A\", \"quantity\": 1, \"unit_price\": 100}]," +
                " \"payments\": [{\"method\": \"Card\", \"amount\": 99}]}"), "unbalanced");
            Check(msg.Contains("sale.payments"), msg);
            Throws<InvalidJsonException>(() => c.RecordSale("[1, 2]"), "array");
            Throws<ArgumentNullException>(() => c.RecordSale(null), "null");
            c.RecordReturn("{\"id\": \"NET-R1\", \"sale_id\": \"NET-S1\", \"created_at\": \"2026-11-28T11:00:00+01:00\"," +
                           " \"lines\": [{\"line_id\": \"1\", \"quantity\": 1, \"amount\": 19950, \"restock\": true}]}");
            c.RecordSale(Sale("NET-S3"));
            c.RecordCancellation("{\"id\": \"NET-X1\", \"order_id\": \"NET-S3\", \"created_at\": \"2026-11-28T10:20:00+01:00\"}");
            Throws<InvalidInputException>(() => c.RecordCancellation("{\"id\": \"NET-X2\"}"), "cancellation");
            string receipt = "{\"id\": \"NET-RC1\", \"sale_id\": \"NET-S1\", \"receipt_number\": \"6001\"," +
                             " \"issued_at\": \"2026-11-28T10:15:00+01:00\", \"total\": 39900, \"tax_total\": 7980, \"currency\": \"NOK\"}";
            c.RecordReceipt(receipt, Encoding.ASCII.GetBytes("%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"));
            msg = Throws<InvalidInputException>(() => c.RecordReceipt(receipt, Encoding.ASCII.GetBytes("<html>")), "pdf");
            Check(msg.Contains("%PDF-"), msg);
            c.RecordCustomer("{\"id\": \"NET-C1\", \"type\": \"person\", \"first_name\": \"Åse\", \"last_name\": \"Ødegård\"}");
            msg = Throws<InvalidInputException>(() => c.RecordCustomer("{\"id\": \"NET-C2\", \"type\": \"company\"}"), "company");
            Check(msg.Contains("company_name"), msg);
            c.RecordGoodsReception("{\"id\": \"NET-GR1\", \"received_at\": \"2026-11-28T08:00:00+01:00\"," +
                                   " \"lines\": [{\"sku\": \"NET-SKU\", \"quantity\": 5}]}");
            msg = Throws<InvalidInputException>(() => c.RecordStockCount(
                "{\"warehouse_id\": \"oslo-1\", \"counted_at\": \"2026-11-28T08:00:00Z\", \"items\": [{\"sku\": \"NET-SKU\", \"quantity\": 12}]}"),
                "stock count");
            Check(msg.Contains("stock master"), msg);
            c.RecordPickup("{\"id\": \"NET-PU1\", \"order_id\": \"NET-S1\", \"status\": \"ready_for_pickup\", \"at\": \"2026-11-28T12:00:00Z\"}");
            Throws<InvalidInputException>(() => c.RecordPickup(
                "{\"id\": \"NET-PU2\", \"order_id\": \"X\", \"status\": \"gone\", \"at\": \"2026-11-28T12:00:00Z\"}"), "pickup");
            c.EventNotify("{\"className\": \"Product\", \"objectId\": \"p-1\", \"storeId\": \"oslo-1\"}");
            Throws<InvalidInputException>(() => c.EventNotify("{\"className\": \"Order\"}"), "event");

            c.SyncNow();
            c.Flush(30000);
            string status = c.Status();
            Check(status.Contains("\"pending\":0") && status.Contains("\"dead\":0") && status.Contains("\"online\":true"), status);
            string landed = SimOrder("NET-S1");
            Check(landed != null && landed.Contains("NET-R1"), "sale and return in Omnium: " + landed);
            string canceled = SimOrder("NET-S3");
            Check(canceled != null && canceled.Contains("OrderCanceled"), "cancelled: " + canceled);

            // Reads (the simulator has stores but no catalog or web orders).
            string store = null;
            for (int i = 0; i < 200 && store == null; i++)
            {
                try { store = c.Store("oslo-1"); }
                catch (NotFoundException) { Thread.Sleep(50); }
            }
            Check(store != null && store.Contains("\"opening_hours\""), "store: " + store);
            Throws<NotFoundException>(() => c.Store("atlantis"), "store");
            Check(c.Stock("NET-SKU").Contains("\"available\""), c.Stock("NET-SKU"));
            Check(c.Customer("NET-C1").Contains("Ødegård"), "UTF-8 both ways: " + c.Customer("NET-C1"));
            Throws<NotFoundException>(() => c.Customer("NET-NOBODY"), "customer");
            msg = Throws<NotFoundException>(() => c.Product("NO-SUCH-SKU"), "product");
            Check(msg.Length > 0, "not found has a message");
            Check(c.SearchProducts("{\"text\": \"zz\", \"limit\": 5}") == "{\"items\":[],\"total\":0}", "search");
            Throws<InvalidInputException>(() => c.SearchProducts("{\"limit\": 0}"), "search limit");
            Check(c.Categories() == "{\"items\":[]}", c.Categories());
            Check(c.Brands() == "{\"items\":[]}", c.Brands());
            Check(c.Orders() == "{\"items\":[]}" && c.Orders("{\"status\": \"New\"}") == "{\"items\":[]}", c.Orders());
            Throws<InvalidInputException>(() => c.Orders("{\"colour\": \"red\"}"), "orders filter");
            Throws<NotFoundException>(() => c.Order("NO-SUCH-ORDER"), "order");
            Check(c.PurchaseOrders() == "{\"items\":[]}" && c.PurchaseOrders("{\"status\": \"New\"}") == "{\"items\":[]}", c.PurchaseOrders());
            c.ForgetCustomer("NET-C1");
            Throws<NotFoundException>(() => c.Customer("NET-C1"), "forgotten");
            Throws<NotFoundException>(() => c.ForgetCustomer("NET-NEVER"), "forget unknown");

            // A dead job: in status, DeadJobs and as an event; then retried.
            Http("POST", "/__sim/faults", "{\"kind\": \"status\", \"status\": 400, \"path_contains\": \"PosOrders\", \"count\": 1}");
            c.RecordSale(Sale("NET-DEAD"));
            c.Flush(30000);
            Check(c.Status().Contains("\"dead\":1"), c.Status());
            string dead = c.DeadJobs();
            Check(dead.Contains("NET-DEAD") && dead.Contains("\"kind\":\"sale\""), dead);
            Check(c.Events(2000).Any(e => e.Contains("\"type\":\"job.dead\"")), "a job.dead event");
            Throws<NotFoundException>(() => c.RetryJob("424242"), "retry unknown");
            c.RetryJob(Regex.Match(dead, "\"id\":\"([^\"]+)\"").Groups[1].Value);
            c.Flush(30000);
            Check(c.Status().Contains("\"dead\":0"), c.Status());
            Check(SimOrder("NET-DEAD") != null, "the retried sale reached Omnium");
            c.RetryJob();

            // Timeouts: NextEvent returns null; Flush throws while Omnium is down.
            int drained = 0;
            while (c.NextEvent(100) != null && drained < 100) drained++;
            Check(drained < 100, "NextEvent returns null when no event comes");
            Http("POST", "/__sim/down", "{\"ms\": 2000}");
            c.RecordSale(Sale("NET-SLOW"));
            msg = Throws<TimedOutException>(() => c.Flush(500), "flush timeout");
            Check(msg.Contains("pending"), msg);
            c.Flush(30000);
        }
        using (var again = new Client(cfg)) // Dispose released the database
            Check(again.Status().Contains("\"pending\":0"), again.Status());

        // Closing while other threads wait in NextEvent and Flush. Omnium is unreachable
        // (nothing answers on port 1): the sale stays pending and Flush waits, however slow
        // this machine is.
        string unreachable = cfg.Replace(simUrl, "http://127.0.0.1:1");
        var closing = new Client(unreachable);
        closing.RecordSale(Sale("NET-CLOSE"));
        var results = new Exception[2];
        var took = new long[2];
        var threads = new Thread[2];
        for (int i = 0; i < 2; i++)
        {
            int n = i;
            threads[i] = new Thread(() =>
            {
                var sw = Stopwatch.StartNew();
                try
                {
                    if (n == 0) while (true) closing.NextEvent(Timeout.Infinite); // until close
                    else closing.Flush(Timeout.Infinite);
                }
                catch (Exception e) { results[n] = e; }
                took[n] = sw.ElapsedMilliseconds;
            });
            threads[i].Start();
        }
        Thread.Sleep(300);
        closing.Dispose();
        foreach (var t in threads) t.Join();
        for (int i = 0; i < 2; i++)
        {
            Check(results[i] is ClosedException, "waiter " + i + " got " + results[i]);
            Check(took[i] < 3300, "waiter " + i + " waited " + took[i] + " ms");
        }
        Check(closing.IsClosed, "closed");
        Throws<ClosedException>(() => closing.Status(), "after close");
        Throws<ClosedException>(() => closing.RecordSale(Sale("NET-AFTER")), "after close");
        Check(!closing.Events().Any(), "no events after close");
        closing.Dispose(); // twice: no-op
        using (var again = new Client(unreachable))
            Check(again.Status().Contains("\"pending\":1"), again.Status());

        // Dispose from the log callback while this thread is inside a call on the same client
        // (fo_forget_customer logs on the calling thread): no deadlock; released after the call.
        var reentrant = new Client(cfg);
        reentrant.RecordCustomer("{\"id\": \"NET-RE\", \"type\": \"person\", \"first_name\": \"Ola\"}");
        bool closedInCallback = false;
        Library.SetLogCallback((level, message) =>
        {
            if (message.Contains("forgotten") && !closedInCallback)
            {
                reentrant.Dispose();
                closedInCallback = reentrant.IsClosed;
            }
        }, 3);
        var forget = new Thread(() => reentrant.ForgetCustomer("NET-RE"));
        forget.Start();
        Check(forget.Join(15000), "ForgetCustomer deadlocked on a Dispose from its own log line");
        Check(closedInCallback, "disposed from the callback");
        Throws<ClosedException>(() => reentrant.Status(), "after a re-entrant Dispose");
        using (var reopened = new Client(cfg)) // released as the call returned
            Throws<NotFoundException>(() => reopened.Customer("NET-RE"), "forgotten");

        Library.SetLogCallback(null, 0);
        Check(logLines > 0, "the log callback was called");
        Check(!secretLogged, "no secret in the log");
    }
}

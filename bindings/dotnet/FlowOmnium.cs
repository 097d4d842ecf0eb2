// The .NET binding of flow-omnium: P/Invoke over its C API (flow_omnium.h).
//
//   using (var client = new FlowOmnium.Client(configJson)) {
//       client.RecordSale(saleJson);            // throws ConflictException, InvalidInputException, ...
//       string ev = client.NextEvent(1000);     // null when no event came
//   }
//
// JSON goes in and comes out as strings (UTF-8 on the wire, whatever the platform's ANSI
// code page). Each result code other than FO_OK is its own exception type derived from
// FlowOmniumException (Code, CodeName, and the library's message). The native handle is a
// SafeHandle (ClientHandle): it is released exactly once, never while a call is using it,
// and by the finalizer if Dispose was forgotten.
//
// A Client may be used from many threads. Dispose makes later calls throw ClosedException,
// and a thread blocked in NextEvent or Flush throws it within about 100 ms: long waits are
// made of short waits of the C library, so no call is inside the library when the handle is
// released. Dispose returns once the database is released (unless called from inside a
// call on this client, e.g. from the log callback: then the release follows that call).
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

namespace FlowOmnium
{
    /// <summary>The result codes of the C API (fo_result).</summary>
    public enum ResultCode
    {
        Ok = 0,
        NullArgument = 1,
        InvalidJson = 2,
        InvalidInput = 3,
        Conflict = 4,
        NotFound = 5,
        Timeout = 6,
        StorageFull = 7,
        Storage = 8,
        Closed = 9,
        Config = 10,
        Panic = 98,
        Internal = 99,
    }

    /// <summary>A call failed: its result code and fo_last_error_message() of that call.</summary>
    public class FlowOmniumException : Exception
    {
        public ResultCode Code { get; private set; }

        public FlowOmniumException(ResultCode code, string message) : base(message)
        {
            Code = code;
        }

        /// <summary>The library's name of the code, e.g. "FO_CONFLICT".</summary>
        public string CodeName { get { return Library.ResultName((int)Code); } }

        public override string ToString()
        {
            return CodeName + ": " + Message;
        }

        internal static FlowOmniumException For(int code, string message)
        {
            switch ((ResultCode)code)
            {
                case ResultCode.NullArgument: return new NullArgumentException(message);
                case ResultCode.InvalidJson: return new InvalidJsonException(message);
                case ResultCode.InvalidInput: return new InvalidInputException(message);
                case ResultCode.Conflict: return new ConflictException(message);
                case ResultCode.NotFound: return new NotFoundException(message);
                case ResultCode.Timeout: return new TimedOutException(message);
                case ResultCode.StorageFull: return new StorageFullException(message);
                case ResultCode.Storage: return new StorageException(message);
                case ResultCode.Closed: return new ClosedException(message);
                case ResultCode.Config: return new ConfigException(message);
                case ResultCode.Panic: return new PanicException(message);
                case ResultCode.Internal: return new InternalException(message);
                default: return new FlowOmniumException((ResultCode)code, message);
            }
        }
    }

    public sealed class NullArgumentException : FlowOmniumException { public NullArgumentException(string m) : base(ResultCode.NullArgument, m) { } }
    public sealed class InvalidJsonException : FlowOmniumException { public InvalidJsonException(string m) : base(ResultCode.InvalidJson, m) { } }
    public sealed class InvalidInputException : FlowOmniumException { public InvalidInputException(string m) : base(ResultCode.InvalidInput, m) { } }
    public sealed class ConflictException : FlowOmniumException { public ConflictException(string m) : base(ResultCode.Conflict, m) { } }
    public sealed class NotFoundException : FlowOmniumException { public NotFoundException(string m) : base(ResultCode.NotFound, m) { } }
    public sealed class TimedOutException : FlowOmniumException { public TimedOutException(string m) : base(ResultCode.Timeout, m) { } }
    public sealed class StorageFullException : FlowOmniumException { public StorageFullException(string m) : base(ResultCode.StorageFull, m) { } }
    public sealed class StorageException : FlowOmniumException { public StorageException(string m) : base(ResultCode.Storage, m) { } }
    public sealed class ClosedException : FlowOmniumException { public ClosedException(string m) : base(ResultCode.Closed, m) { } }
    public sealed class ConfigException : FlowOmniumException { public ConfigException(string m) : base(ResultCode.Config, m) { } }
    public sealed class PanicException : FlowOmniumException { public PanicException(string m) : base(ResultCode.Panic, m) { } }
    public sealed class InternalException : FlowOmniumException { public InternalException(string m) : base(ResultCode.Internal, m) { } }

    /// <summary>The raw C API. Strings are passed as NUL-terminated UTF-8 byte arrays.</summary>
    internal static class Native
    {
        const string Lib = "flow_omnium"; // libflow_omnium.so, flow_omnium.dll

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void LogFn(IntPtr userData, int level, IntPtr message);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern IntPtr fo_last_error_message();
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern IntPtr fo_result_name(int r);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern IntPtr fo_version();
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern void fo_string_free(IntPtr s);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern int fo_client_open(byte[] config, out IntPtr client);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern void fo_client_close(IntPtr client);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern int fo_record_sale(ClientHandle c, byte[] json);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern int fo_record_return(ClientHandle c, byte[] json);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern int fo_record_cancellation(ClientHandle c, byte[] json);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern int fo_record_receipt(ClientHandle c, byte[] json, byte[] pdf, UIntPtr pdfLen);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern int fo_record_customer(ClientHandle c, byte[] json);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern int fo_record_goods_reception(ClientHandle c, byte[] json);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern int fo_record_stock_count(ClientHandle c, byte[] json);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern int fo_record_pickup(ClientHandle c, byte[] json);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern int fo_event_notify(ClientHandle c, byte[] json);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern int fo_orders_list(ClientHandle c, byte[] filter, out IntPtr json);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern int fo_order_get(ClientHandle c, byte[] id, out IntPtr json);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern int fo_purchase_orders_list(ClientHandle c, byte[] filter, out IntPtr json);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern int fo_customer_get(ClientHandle c, byte[] id, out IntPtr json);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern int fo_product_get(ClientHandle c, byte[] sku, out IntPtr json);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern int fo_product_search(ClientHandle c, byte[] query, out IntPtr json);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern int fo_stock_get(ClientHandle c, byte[] sku, out IntPtr json);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern int fo_store_get(ClientHandle c, byte[] id, out IntPtr json);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern int fo_categories_list(ClientHandle c, out IntPtr json);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern int fo_brands_list(ClientHandle c, out IntPtr json);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern int fo_sync_now(ClientHandle c);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern int fo_flush(ClientHandle c, uint timeoutMs);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern int fo_status(ClientHandle c, out IntPtr json);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern int fo_next_event(ClientHandle c, uint timeoutMs, out IntPtr json);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern int fo_dead_jobs(ClientHandle c, out IntPtr json);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern int fo_job_retry(ClientHandle c, byte[] jobId);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern void fo_set_log_callback(LogFn cb, IntPtr userData, int maxLevel);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] internal static extern int fo_forget_customer(ClientHandle c, byte[] customerId);
    }

    /// <summary>The fo_client pointer: fo_client_close runs once, after the last call using it.</summary>
    public sealed class ClientHandle : SafeHandle
    {
        readonly ManualResetEvent released = new ManualResetEvent(false);

        internal ClientHandle(IntPtr client) : base(IntPtr.Zero, true)
        {
            SetHandle(client);
        }

        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        protected override bool ReleaseHandle()
        {
            Native.fo_client_close(handle);
            released.Set();
            return true;
        }

        internal void WaitReleased() { released.WaitOne(); }
    }

    /// <summary>Process-wide functions of the library.</summary>
    public static class Library
    {
        public static string Version { get { return Utf8.From(Native.fo_version()); } }

        /// <summary>The name of a result code ("FO_UNKNOWN" for numbers that are none).</summary>
        public static string ResultName(int code) { return Utf8.From(Native.fo_result_name(code)); }

        // One trampoline for the life of the process (the library may still call it after
        // another callback is registered); it calls whatever is current.
        static readonly Native.LogFn Trampoline = OnLog;
        static volatile Action<int, string> logTarget;

        static void OnLog(IntPtr userData, int level, IntPtr message)
        {
            try
            {
                Action<int, string> target = logTarget;
                if (target != null) target(level, Utf8.From(message));
            }
            catch (Exception)
            {
                // An exception must never unwind into the library.
            }
        }

        /// <summary>Sends log lines up to maxLevel (1 error … 5 trace) to callback, from the
        /// library's threads; null turns logging off. Exceptions in the callback are swallowed.</summary>
        public static void SetLogCallback(Action<int, string> callback, int maxLevel)
        {
            if (callback == null || maxLevel <= 0)
            {
                Native.fo_set_log_callback(null, IntPtr.Zero, 0);
                logTarget = null;
                return;
            }
            logTarget = callback;
            Native.fo_set_log_callback(Trampoline, IntPtr.Zero, maxLevel);
        }
    }

    internal static class Utf8
    {
        internal static byte[] Arg(string s, string what)
        {
            if (s == null) return null;
            if (s.IndexOf('\0') >= 0) throw new ArgumentException(what + " contains a NUL character", what);
            byte[] bytes = new byte[Encoding.UTF8.GetByteCount(s) + 1];
            Encoding.UTF8.GetBytes(s, 0, s.Length, bytes, 0);
            return bytes;
        }

        internal static string From(IntPtr p)
        {
            if (p == IntPtr.Zero) return null;
            int len = 0;
            while (Marshal.ReadByte(p, len) != 0) len++;
            byte[] bytes = new byte[len];
            Marshal.Copy(p, bytes, 0, len);
            return Encoding.UTF8.GetString(bytes);
        }

        /// <summary>Copies a string the library returned and frees it.</summary>
        internal static string Take(IntPtr p)
        {
            try { return From(p); }
            finally { Native.fo_string_free(p); }
        }
    }

    /// <summary>An open flow-omnium client: a database, a configuration and a sync worker.</summary>
    public sealed class Client : IDisposable
    {
        const int SliceMs = 100; // the longest single wait inside the C library

        readonly ClientHandle handle;
        // Calls in progress, counted here and not only by the SafeHandle, so that Dispose
        // (and not the last waiter's thread) runs fo_client_close, and so that no new call
        // starts once Dispose began (Mono's SafeHandle still hands out references after
        // Dispose while one is held, so busy threads could keep it open indefinitely).
        readonly object gate = new object();
        int inFlight;
        bool closing;
        readonly ThreadLocal<int> callsOnThisThread = new ThreadLocal<int>();

        /// <summary>Opens (or creates) the database and starts the sync worker. Throws
        /// ConfigException (naming the key), StorageException ("in use" when another client
        /// holds the database), StorageFullException.</summary>
        public Client(string configJson)
        {
            IntPtr raw;
            Check(Native.fo_client_open(Arg(configJson, "configJson"), out raw));
            handle = new ClientHandle(raw);
        }

        public bool IsClosed { get { lock (gate) return closing; } }

        /// <summary>Stops the sync worker and releases the database (within about 10 s).
        /// Threads waiting in NextEvent or Flush throw ClosedException within about 100 ms.
        /// From inside a call on this client (the log callback), the release follows that
        /// call.</summary>
        public void Dispose()
        {
            int mine = callsOnThisThread.Value;
            lock (gate)
            {
                if (closing) return;
                closing = true;
                while (inFlight > mine) Monitor.Wait(gate);
            }
            handle.Dispose(); // releases now unless this thread is inside a call
            if (mine == 0) handle.WaitReleased();
        }

        static void Check(int code)
        {
            if (code == 0) return;
            // Same thread as the failed call, before any other fo_ call.
            throw FlowOmniumException.For(code, Utf8.From(Native.fo_last_error_message()));
        }

        // Runs one C call with the handle (the marshaller also holds a SafeHandle reference).
        T Call<T>(Func<T> body)
        {
            lock (gate)
            {
                if (closing) throw new ClosedException("the client is closed");
                inFlight++;
            }
            callsOnThisThread.Value++;
            try
            {
                return body();
            }
            catch (ObjectDisposedException)
            {
                throw new ClosedException("the client is closed");
            }
            finally
            {
                callsOnThisThread.Value--;
                lock (gate)
                {
                    inFlight--;
                    Monitor.PulseAll(gate);
                }
            }
        }

        void Do(Func<ClientHandle, int> fn)
        {
            Call(() => { Check(fn(handle)); return 0; });
        }

        string Read(Func<ClientHandle, IntPtr[], int> fn)
        {
            return Call(() =>
            {
                IntPtr[] outp = new IntPtr[1];
                Check(fn(handle, outp));
                return Utf8.Take(outp[0]);
            });
        }

        static byte[] Arg(string s, string what)
        {
            if (s == null) throw new ArgumentNullException(what);
            return Utf8.Arg(s, what);
        }

        // Recording: validated and committed durably, never waiting on the network.
        public void RecordSale(string json) { byte[] a = Arg(json, "json"); Do(h => Native.fo_record_sale(h, a)); }
        public void RecordReturn(string json) { byte[] a = Arg(json, "json"); Do(h => Native.fo_record_return(h, a)); }
        public void RecordCancellation(string json) { byte[] a = Arg(json, "json"); Do(h => Native.fo_record_cancellation(h, a)); }
        public void RecordReceipt(string json, byte[] pdf)
        {
            byte[] a = Arg(json, "json");
            if (pdf == null) throw new ArgumentNullException("pdf");
            Do(h => Native.fo_record_receipt(h, a, pdf, (UIntPtr)pdf.Length));
        }
        public void RecordCustomer(string json) { byte[] a = Arg(json, "json"); Do(h => Native.fo_record_customer(h, a)); }
        public void RecordGoodsReception(string json) { byte[] a = Arg(json, "json"); Do(h => Native.fo_record_goods_reception(h, a)); }
        public void RecordStockCount(string json) { byte[] a = Arg(json, "json"); Do(h => Native.fo_record_stock_count(h, a)); }
        public void RecordPickup(string json) { byte[] a = Arg(json, "json"); Do(h => Native.fo_record_pickup(h, a)); }
        /// <summary>An Omnium event-subscription payload, as it arrived.</summary>
        public void EventNotify(string omniumEventJson) { byte[] a = Arg(omniumEventJson, "omniumEventJson"); Do(h => Native.fo_event_notify(h, a)); }
        public void ForgetCustomer(string customerId) { byte[] a = Arg(customerId, "customerId"); Do(h => Native.fo_forget_customer(h, a)); }

        // Reading from the local database (works offline); unknown ids throw NotFoundException.
        public string Orders(string filterJson = null) { byte[] a = Utf8.Arg(filterJson, "filterJson"); return Read((h, o) => Native.fo_orders_list(h, a, out o[0])); }
        public string Order(string orderId) { byte[] a = Arg(orderId, "orderId"); return Read((h, o) => Native.fo_order_get(h, a, out o[0])); }
        public string PurchaseOrders(string filterJson = null) { byte[] a = Utf8.Arg(filterJson, "filterJson"); return Read((h, o) => Native.fo_purchase_orders_list(h, a, out o[0])); }
        public string Customer(string customerId) { byte[] a = Arg(customerId, "customerId"); return Read((h, o) => Native.fo_customer_get(h, a, out o[0])); }
        public string Product(string sku) { byte[] a = Arg(sku, "sku"); return Read((h, o) => Native.fo_product_get(h, a, out o[0])); }
        public string SearchProducts(string queryJson) { byte[] a = Arg(queryJson, "queryJson"); return Read((h, o) => Native.fo_product_search(h, a, out o[0])); }
        public string Stock(string sku) { byte[] a = Arg(sku, "sku"); return Read((h, o) => Native.fo_stock_get(h, a, out o[0])); }
        public string Store(string storeId) { byte[] a = Arg(storeId, "storeId"); return Read((h, o) => Native.fo_store_get(h, a, out o[0])); }
        public string Categories() { return Read((h, o) => Native.fo_categories_list(h, out o[0])); }
        public string Brands() { return Read((h, o) => Native.fo_brands_list(h, out o[0])); }

        // Sync.
        public void SyncNow() { Do(h => Native.fo_sync_now(h)); }
        public string Status() { return Read((h, o) => Native.fo_status(h, out o[0])); }
        public string DeadJobs() { return Read((h, o) => Native.fo_dead_jobs(h, out o[0])); }
        /// <summary>Gives a dead job (an "id" from DeadJobs) new attempts; null retries every one.</summary>
        public void RetryJob(string jobId = null) { byte[] a = Utf8.Arg(jobId, "jobId"); Do(h => Native.fo_job_retry(h, a)); }

        /// <summary>Waits until nothing is pending (dead jobs and jobs behind them do not
        /// count); TimedOutException after timeoutMs (Timeout.Infinite, -1: no limit),
        /// ClosedException if closed meanwhile.</summary>
        public void Flush(int timeoutMs)
        {
            Stopwatch clock = Stopwatch.StartNew();
            while (true)
            {
                uint slice = SliceOf(timeoutMs, clock);
                string late = Call(() =>
                {
                    int r = Native.fo_flush(handle, slice);
                    if (r == (int)ResultCode.Timeout)
                        return Utf8.From(Native.fo_last_error_message()) ?? "";
                    Check(r);
                    return null;
                });
                if (late == null) return;
                if (slice < SliceMs || (timeoutMs >= 0 && clock.ElapsedMilliseconds >= timeoutMs))
                    throw new TimedOutException(late + " (waited " + timeoutMs + " ms in all)");
            }
        }

        /// <summary>The next event's JSON, waiting up to timeoutMs (Timeout.Infinite, -1:
        /// until one comes or the client is closed); null when none came.</summary>
        public string NextEvent(int timeoutMs)
        {
            Stopwatch clock = Stopwatch.StartNew();
            while (true)
            {
                uint slice = SliceOf(timeoutMs, clock);
                string ev = Call(() =>
                {
                    IntPtr json;
                    int r = Native.fo_next_event(handle, slice, out json);
                    if (r == (int)ResultCode.Timeout) return null;
                    Check(r);
                    return Utf8.Take(json);
                });
                if (ev != null) return ev;
                if (slice < SliceMs || (timeoutMs >= 0 && clock.ElapsedMilliseconds >= timeoutMs)) return null;
            }
        }

        // The next wait inside the C library: what is left of timeoutMs, at most SliceMs.
        static uint SliceOf(int timeoutMs, Stopwatch clock)
        {
            if (timeoutMs < 0) return SliceMs;
            return (uint)Math.Max(0, Math.Min(SliceMs, timeoutMs - clock.ElapsedMilliseconds));
        }

        /// <summary>Events as they come; ends when the client is closed or, with
        /// idleTimeoutMs &gt;= 0, when none comes within it (-1: only at close).</summary>
        public IEnumerable<string> Events(int idleTimeoutMs = -1)
        {
            while (true)
            {
                string ev;
                try
                {
                    ev = NextEvent(idleTimeoutMs);
                }
                catch (ClosedException)
                {
                    yield break;
                }
                if (ev != null) yield return ev;
                else if (idleTimeoutMs >= 0) yield break;
            }
        }
    }
}

// Yamcs events from rackflight's TM[5,1..4] event reports (ECSS-E-ST-70-41C 6.5; docs/icd.md
// section 10): source = the component whose event it is, type = the event's dictionary name,
// severity from the subtype (INFO, LOW, MEDIUM, HIGH -> INFO, WATCH, DISTRESS, CRITICAL, as
// Yamcs' own org.yamcs.pus.PusEventDecoder maps them), message = the report's own text,
// generation time = the packet's. Yamcs' decoder leaves the source empty, which its web UI's
// events page cannot sort; this one also needs no per-event template: the message comes down
// already formatted. `flight ground yamcs` compiles this with Janino and writes the event file:
// one line per event, "<event id> <component> <component>.<event>".
package org.rackflight.yamcs;

import java.io.BufferedReader;
import java.io.FileReader;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;

import org.yamcs.AbstractYamcsService;
import org.yamcs.InitException;
import org.yamcs.Spec;
import org.yamcs.StandardTupleDefinitions;
import org.yamcs.YConfiguration;
import org.yamcs.YamcsServer;
import org.yamcs.protobuf.Event.EventSeverity;
import org.yamcs.time.TimeService;
import org.yamcs.yarch.Stream;
import org.yamcs.yarch.StreamSubscriber;
import org.yamcs.yarch.Tuple;
import org.yamcs.yarch.protobuf.Db.Event;

public class PusEventDecoder extends AbstractYamcsService implements StreamSubscriber {
    static final int EVENT_SERVICE = 5;
    static final int DATA_OFFSET = 20; // 6-byte primary header, 14-byte PUS-C TM secondary header

    Map names = new HashMap();
    Map sources = new HashMap();
    Stream tmStream;
    Stream eventStream;
    TimeService timeService;

    public Spec getSpec() {
        Spec spec = new Spec();
        spec.addOption("eventFile", Spec.OptionType.STRING).withRequired(true);
        spec.addOption("tmStream", Spec.OptionType.STRING).withDefault("tm_realtime");
        spec.addOption("eventStream", Spec.OptionType.STRING).withDefault("events_realtime");
        return spec;
    }

    public void init(String yamcsInstance, String serviceName, YConfiguration config) throws InitException {
        super.init(yamcsInstance, serviceName, config);
        String file = config.getString("eventFile");
        try {
            BufferedReader in = new BufferedReader(new FileReader(file, StandardCharsets.UTF_8));
            try {
                String line;
                while ((line = in.readLine()) != null) {
                    String[] parts = line.trim().split(" ");
                    if (parts.length == 3) {
                        Integer id = Integer.valueOf(Integer.parseInt(parts[0]));
                        sources.put(id, parts[1]);
                        names.put(id, parts[2]);
                    }
                }
            } finally {
                in.close();
            }
        } catch (IOException e) {
            throw new InitException("cannot read the event file " + file + ": " + e);
        }
        tmStream = findStream(config.getString("tmStream"));
        eventStream = findStream(config.getString("eventStream"));
        timeService = YamcsServer.getTimeService(yamcsInstance);
    }

    protected void doStart() {
        tmStream.addSubscriber(this);
        notifyStarted();
    }

    protected void doStop() {
        tmStream.removeSubscriber(this);
        notifyStopped();
    }

    static int u16(byte[] p, int at) {
        return ((p[at] & 0xFF) << 8) | (p[at + 1] & 0xFF);
    }

    public void onTuple(Stream stream, Tuple tuple) {
        byte[] p = (byte[]) tuple.getColumn(StandardTupleDefinitions.TM_PACKET_COLUMN);
        // event id, message length, the 2-byte packet error control at least
        if (p.length < DATA_OFFSET + 6 || (p[7] & 0xFF) != EVENT_SERVICE) {
            return;
        }
        int subtype = p[8] & 0xFF;
        EventSeverity severity;
        if (subtype == 1) {
            severity = EventSeverity.INFO;
        } else if (subtype == 2) {
            severity = EventSeverity.WATCH;
        } else if (subtype == 3) {
            severity = EventSeverity.DISTRESS;
        } else if (subtype == 4) {
            severity = EventSeverity.CRITICAL;
        } else {
            return; // TM[5,8], the disabled-event list, is not an event
        }
        Integer id = Integer.valueOf(u16(p, DATA_OFFSET));
        int length = Math.min(u16(p, DATA_OFFSET + 2), p.length - 2 - (DATA_OFFSET + 4));
        String message = new String(p, DATA_OFFSET + 4, Math.max(length, 0), StandardCharsets.UTF_8);
        int apid = u16(p, 0) & 0x7FF;
        String source = sources.containsKey(id) ? (String) sources.get(id) : "apid " + apid;
        String type = names.containsKey(id) ? (String) names.get(id) : "event 0x" + Integer.toHexString(id.intValue());
        long gentime = ((Long) tuple.getColumn(StandardTupleDefinitions.GENTIME_COLUMN)).longValue();
        int seq = ((Integer) tuple.getColumn(StandardTupleDefinitions.SEQNUM_COLUMN)).intValue();
        Event event = Event.newBuilder().setGenerationTime(gentime).setReceptionTime(timeService.getMissionTime())
                .setSource(source).setType(type).setSeqNumber(seq).setSeverity(severity).setMessage(message).build();
        eventStream.emitTuple(new Tuple(eventStream.getDefinition(),
                new Object[] { Long.valueOf(gentime), source, Integer.valueOf(seq), event }));
    }
}

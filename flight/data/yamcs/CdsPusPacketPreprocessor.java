// Yamcs' PUS packet preprocessor reading the PUS-C TM time field as rackflight writes it: a
// CCSDS Day Segmented time code (CCSDS 301.0-B-4 3.3) with its P-field 0x40 (agency epoch
// 1958-01-01, 16-bit day, milliseconds of the day, no sub-millisecond field), UTC without leap
// seconds (docs/icd.md section 3). Yamcs 5.12's own decoders read CUC and fixed-size counts
// only; everything else (CRC check, sequence counts, time offset 13) is PusPacketPreprocessor's.
// `flight ground yamcs` compiles this with the Janino compiler Yamcs itself ships.
package org.rackflight.yamcs;

import org.yamcs.YConfiguration;
import org.yamcs.pus.PusPacketPreprocessor;
import org.yamcs.tctm.AbstractPacketPreprocessor;
import org.yamcs.time.TimeDecoder;

public class CdsPusPacketPreprocessor extends PusPacketPreprocessor {
    public CdsPusPacketPreprocessor(String yamcsInstance) {
        this(yamcsInstance, YConfiguration.emptyConfig());
    }

    public CdsPusPacketPreprocessor(String yamcsInstance, YConfiguration config) {
        super(yamcsInstance, config);
        timeDecoder = new CdsTimeDecoder();
        timeEpoch = AbstractPacketPreprocessor.TimeEpochs.UNIX;
    }

    /** Milliseconds since 1970-01-01 UTC (no leap seconds) of a 7-byte CDS time code. */
    public static class CdsTimeDecoder implements TimeDecoder {
        static final int P_FIELD = 0x40;
        static final long DAYS_1958_TO_1970 = 4383L;

        public long decode(byte[] buf, int offset) {
            if ((buf[offset] & 0xFF) != P_FIELD) {
                throw new IllegalArgumentException("CDS P-field 0x" + Integer.toHexString(buf[offset] & 0xFF)
                        + " is not 0x40");
            }
            long day = ((buf[offset + 1] & 0xFFL) << 8) | (buf[offset + 2] & 0xFFL);
            long ms = ((buf[offset + 3] & 0xFFL) << 24) | ((buf[offset + 4] & 0xFFL) << 16)
                    | ((buf[offset + 5] & 0xFFL) << 8) | (buf[offset + 6] & 0xFFL);
            return (day - DAYS_1958_TO_1970) * 86400000L + ms;
        }

        public long decodeRaw(byte[] buf, int offset) {
            return decode(buf, offset);
        }
    }
}
